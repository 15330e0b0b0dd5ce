"""Tokens: entropy, cookie signing, keyed storage ids."""

from __future__ import annotations

import pytest

from helpers import build_settings
from sessionhub.exceptions import InvalidTokenError
from sessionhub.hub import build_manager
from sessionhub.tokens import TokenCodec, short

SECRET = b"0123456789abcdef0123456789abcdef"


def test_tokens_are_256_bit_and_unique() -> None:
    """Each token carries 256 random bits and no two are alike."""
    codec = TokenCodec(SECRET)
    tokens = {codec.new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 43 for t in tokens)  # 32 bytes, base64url without padding


def test_signed_cookie_round_trips() -> None:
    """A signed cookie yields back exactly its token."""
    codec = TokenCodec(SECRET, use_signer=True)
    token = codec.new_token()
    cookie = codec.cookie_value(token)
    assert cookie.startswith(token + ".")
    assert codec.token_from_cookie(cookie) == token


BAD_COOKIES = [
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # tampered signature
    lambda c: c[:10],  # truncated
    lambda c: ("y" if c[0] == "x" else "x") + c[1:],  # tampered token (never the same one)
    lambda c: c.split(".")[0],  # signature stripped
    lambda c: "",
    lambda c: "a" * 5000,  # huge
    lambda c: c + ".extra",
    lambda c: "☃" * 43 + "." + c.split(".")[1],
]


@pytest.mark.parametrize("mutate", BAD_COOKIES)
def test_bad_cookies_are_rejected(mutate: object) -> None:
    """Tampered, truncated, stripped, oversized and non-ASCII cookies raise InvalidTokenError."""
    codec = TokenCodec(SECRET)
    cookie = codec.cookie_value(codec.new_token())
    with pytest.raises(InvalidTokenError):
        codec.token_from_cookie(mutate(cookie))  # type: ignore[operator]


@pytest.mark.parametrize("mutate", BAD_COOKIES)
def test_bad_cookies_are_rejected_after_the_good_one_was_remembered(mutate: object) -> None:
    """The manager's verified-cookie memory never lets a tampered variant of a cookie through."""
    manager = build_manager(build_settings(None), with_redis=False)
    cookie = manager.codec.cookie_value(manager.codec.new_token())
    storage_id = manager.storage_id_for_cookie(cookie)
    assert manager.storage_id_for_cookie(cookie) == storage_id  # remembered
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(InvalidTokenError):
            manager.storage_id_for_cookie(mutate(cookie))  # type: ignore[operator]


def test_cookie_from_another_secret_is_foreign() -> None:
    """A cookie signed under another SECRET_KEY is rejected."""
    ours, theirs = TokenCodec(SECRET), TokenCodec(b"another-secret-key-of-32-bytes!!")
    with pytest.raises(InvalidTokenError):
        ours.token_from_cookie(theirs.cookie_value(theirs.new_token()))


def test_unsigned_mode_still_checks_shape() -> None:
    """Without the signer the cookie is the bare token, and garbage is still rejected."""
    codec = TokenCodec(SECRET, use_signer=False)
    token = codec.new_token()
    assert codec.cookie_value(token) == token
    assert codec.token_from_cookie(token) == token
    with pytest.raises(InvalidTokenError):
        codec.token_from_cookie("not a token")


def test_storage_id_is_keyed_and_not_the_token() -> None:
    """The storage id depends on the secret, is stable, and reveals nothing of the token."""
    a, b = TokenCodec(SECRET), TokenCodec(b"another-secret-key-of-32-bytes!!")
    token = a.new_token()
    assert a.storage_id(token) == a.storage_id(token)
    assert a.storage_id(token) != b.storage_id(token)
    assert token not in a.storage_id(token)
    assert short(a.storage_id(token)) == a.storage_id(token)[:8] + "..."


def test_address_id_is_keyed_and_its_own_derivation() -> None:
    """A client address is hashed under the secret, apart from storage ids, and not shown."""
    a, b = TokenCodec(SECRET), TokenCodec(b"another-secret-key-of-32-bytes!!")
    address = "2001:db8::7"
    assert a.address_id(address) == a.address_id(address)
    assert a.address_id(address) != b.address_id(address)
    assert a.address_id(address) != a.address_id("2001:db8::8")
    assert a.address_id(address) != a.storage_id(address)
    assert len(a.address_id(address)) == 32


def test_handle_differs_from_storage_id() -> None:
    """Public handles are another derivation, so showing one never shows a key name."""
    codec = TokenCodec(SECRET)
    storage_id = codec.storage_id(codec.new_token())
    assert codec.handle(storage_id) != storage_id[: len(codec.handle(storage_id))]
