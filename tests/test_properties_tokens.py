"""Properties of cookie parsing and signing: any input yields a storage id or InvalidTokenError."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import build_settings
from sessionhub.exceptions import InvalidTokenError
from sessionhub.hub import build_manager
from sessionhub.tokens import MAX_COOKIE_LEN, TokenCodec, is_storage_id
from strategies import any_char, any_text, bytes_as_text, huge_text, texts

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
STORAGE_ID = re.compile(r"[0-9a-f]{32}")
MANAGER = build_manager(build_settings(), with_redis=False)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

sig_chars = st.sampled_from(B64URL) | any_char
secrets_ = st.binary(min_size=16, max_size=64)
signer = st.booleans()
cookies = st.one_of(any_text, bytes_as_text, huge_text, st.text(B64URL + ".", max_size=100))


def _storage_id_or_invalid(codec: TokenCodec, cookie: str) -> str | None:
    try:
        return codec.storage_id(codec.token_from_cookie(cookie))
    except InvalidTokenError:
        return None


@given(secret=secrets_, use_signer=signer, cookie=cookies)
def test_any_cookie_yields_a_storage_id_or_invalid_token(
    secret: bytes, use_signer: bool, cookie: str
) -> None:
    """Whatever a client sends as a cookie, the codec answers a storage id or InvalidTokenError."""
    storage_id = _storage_id_or_invalid(TokenCodec(secret, use_signer=use_signer), cookie)
    assert storage_id is None or STORAGE_ID.fullmatch(storage_id)


@given(
    use_signer=signer,
    token=st.text(B64URL, min_size=43, max_size=43),
    sig=texts(sig_chars, min_size=43, max_size=43) | any_text,
)
def test_well_shaped_token_with_any_signature_never_raises_other_errors(
    use_signer: bool, token: str, sig: str
) -> None:
    """A token of the right shape followed by any signature text is ours or InvalidTokenError."""
    codec = TokenCodec(SECRET, use_signer=use_signer)
    storage_id = _storage_id_or_invalid(codec, f"{token}.{sig}")
    assert storage_id is None or (use_signer and sig == codec.cookie_value(token).partition(".")[2])


@given(secret=secrets_, use_signer=signer)
def test_new_token_round_trips_through_its_cookie(secret: bytes, use_signer: bool) -> None:
    """new token -> cookie -> token gives the same token, and its storage id is 32 hex chars."""
    codec = TokenCodec(secret, use_signer=use_signer)
    token = codec.new_token()
    cookie = codec.cookie_value(token)
    assert len(cookie) <= MAX_COOKIE_LEN
    assert codec.token_from_cookie(cookie) == token
    assert is_storage_id(codec.storage_id(token))
    assert STORAGE_ID.fullmatch(codec.storage_id(token))


@given(secret=secrets_, other=secrets_)
def test_signature_from_another_secret_never_verifies(secret: bytes, other: bytes) -> None:
    """A cookie signed under one secret is refused by a codec holding any other secret."""
    mine, theirs = TokenCodec(secret), TokenCodec(other)
    cookie = theirs.cookie_value(theirs.new_token())
    if secret == other:
        assert mine.token_from_cookie(cookie)
    else:
        with pytest.raises(InvalidTokenError):
            mine.token_from_cookie(cookie)


@given(position=st.integers(min_value=0), replacement=st.characters(codec=None))
def test_any_changed_character_breaks_a_signed_cookie(position: int, replacement: str) -> None:
    """Changing any one character of a signed cookie makes it invalid (unless it is unchanged)."""
    codec = TokenCodec(SECRET)
    token = codec.new_token()
    cookie = codec.cookie_value(token)
    i = position % len(cookie)
    tampered = cookie[:i] + replacement + cookie[i + 1 :]
    if tampered == cookie:
        assert codec.token_from_cookie(tampered) == token
    else:
        with pytest.raises(InvalidTokenError):
            codec.token_from_cookie(tampered)


@given(cookie=cookies)
def test_manager_maps_any_cookie_to_a_storage_id_or_invalid_token(cookie: str) -> None:
    """The hub's cached cookie check answers exactly as the codec does, for any input."""
    manager = MANAGER
    expected = _storage_id_or_invalid(manager.codec, cookie)
    try:
        got: str | None = manager.storage_id_for_cookie(cookie)
    except InvalidTokenError:
        got = None
    assert got == expected
