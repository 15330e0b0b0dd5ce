"""The suite never reaches a Redis on the default port: that one belongs to whoever runs the
machine. A connection to it is refused as if nothing listened, and the test that tried fails."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

DEFAULT_PORT = 6379
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""})

attempts: list[str] = []
"""Each refused address, for the test that made it to fail on."""


def _forbidden(sock: socket.socket, address: Any) -> bool:
    return (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and isinstance(address, tuple)
        and address[1] == DEFAULT_PORT
        and address[0] in _LOCAL_HOSTS
    )


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(sock: socket.socket, address: Any) -> Any:
        if _forbidden(sock, address):
            attempts.append(f"{address[0]}:{address[1]}")
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"tests never connect to {address[0]}:{DEFAULT_PORT}: start a server of the "
                "test's own (see tests/redis_server.py)",
            )
        return original(sock, address)

    return connect


def install() -> None:
    """Guard every socket this process opens (asyncio's and redis-py's included)."""
    socket.socket.connect = _guarded(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(socket.socket.connect_ex)  # type: ignore[method-assign]
