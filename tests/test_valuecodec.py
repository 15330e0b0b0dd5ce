"""The value codec: prefixes, compression, encryption, associated data and unlisted keys."""

from __future__ import annotations

import os

import pytest

from sessionhub.valuecodec import MARK, PLAIN, ValueCodec, _Zlib, _Zstd

K1 = ("k1", os.urandom(32))
K2 = ("k2", os.urandom(32))
LARGE = '{"items":[' + ",".join(f'"item {i}"' for i in range(500)) + "]}"


def test_plain_values_pass_through_unchanged() -> None:
    """Without compression or encryption a value is stored as it is, and a text that happens to
    begin with the marker still reads back as itself."""
    assert PLAIN.seal('{"a":1}', "aad") == '{"a":1}'
    assert PLAIN.open('{"a":1}', "aad") == '{"a":1}'
    odd = MARK + "e" + "k1:looks-encrypted"
    assert PLAIN.open(PLAIN.seal(odd, "aad"), "aad") == odd


@pytest.mark.parametrize("compressor", [_Zlib(), _Zstd()], ids=["zlib", "zstd"])
def test_large_values_are_compressed_and_read_back(compressor: object) -> None:
    """Above the threshold a value is stored compressed, smaller, and reads back unchanged."""
    codec = ValueCodec(compress_threshold=100, compressor=compressor)  # type: ignore[arg-type]
    stored = codec.seal(LARGE, "aad")
    assert len(stored) < len(LARGE) / 2
    assert codec.open(stored, "aad") == LARGE
    assert codec.seal('{"small":1}', "aad") == '{"small":1}'
    # Readable by a codec with compression switched off.
    assert PLAIN.open(stored, "aad") == LARGE


def test_encrypted_values_need_the_same_associated_data() -> None:
    """An encrypted value reads back only with the associated data it was sealed with: moved
    to another owner or field, it is refused (counted), never decrypted."""
    codec = ValueCodec([K1], compress_threshold=100)
    for text in ('"short"', LARGE):
        stored = codec.seal(text, "s\x00sid1\x00d:x")
        assert text not in stored
        assert codec.key_id(stored) == "k1"
        assert codec.open(stored, "s\x00sid1\x00d:x") == text
    assert codec.open(stored, "s\x00sid2\x00d:x") is None
    assert codec.rejected == 1


def test_every_listed_key_decrypts_and_an_unlisted_one_is_missing() -> None:
    """The first key encrypts; a value under any listed key reads; one under a key no longer
    listed reads as missing and is counted."""
    old = ValueCodec([K1]).seal("secret", "aad")
    both = ValueCodec([K2, K1])
    assert both.open(old, "aad") == "secret"
    assert not both.is_current(old)
    assert both.is_current(both.seal("secret", "aad"))
    only_new = ValueCodec([K2])
    assert only_new.open(old, "aad") is None
    assert only_new.unlisted == 1
    assert only_new.open("plain old value", "aad") == "plain old value"


def test_the_empty_text_is_stored_as_it_is() -> None:
    """An empty user agent or IP is stored empty even with encryption on (a ciphertext of it
    only took space), reads back empty, and counts as current for a rotation."""
    codec = ValueCodec([K1], compress_threshold=1)
    assert codec.seal("", "aad") == ""
    assert codec.open("", "aad") == ""
    assert codec.is_current("")
    assert codec.seal("x", "aad").startswith(MARK + "ek1:")
