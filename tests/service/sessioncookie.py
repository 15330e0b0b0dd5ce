"""Requests as one device: its session cookie as a header of that request alone."""

from __future__ import annotations


def as_session(cookie: str) -> dict[str, str]:
    """Headers that send ``cookie`` as the session, instead of the client's cookie jar.

    Per-request ``cookies=`` is deprecated in httpx (whether the jar keeps them is ambiguous);
    an explicit Cookie header is sent as it is and the jar is left out of that request.
    """
    return {"cookie": f"session={cookie}"}
