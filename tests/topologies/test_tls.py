"""TLS: SessionHub reaches a TLS-only Redis with a CA the test made, and refuses a server whose
certificate another CA signed, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import build_settings, hub_factory
from redis_server import TlsRedisServer
from tls_certs import Certs, make_certs


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("spelling", ["url", "flag"])
def test_sessions_over_tls_with_the_right_ca(
    tls_server: TlsRedisServer, certs: Certs, kind: str, spelling: str
) -> None:
    """With TLS_CA_CERT naming the CA, sessions are stored in the TLS-only Redis, whether TLS
    is asked for by a rediss:// URL or by TLS: true."""
    redis = {"TLS_CA_CERT": str(certs.ca_cert)}
    if spelling == "flag":
        redis |= {"URL": None, "HOST": "127.0.0.1", "PORT": tls_server.port, "TLS": True}

    def settings(**sections: dict[str, object]) -> object:
        return build_settings(tls_server.url, redis=redis, **sections)

    with hub_factory(kind, settings) as make:
        hub = make()
        session, cookie = hub.create("alice", data={"n": 1})
        assert dict(hub.open(cookie)) == {"n": 1}
        assert hub.manager.core.mode == "redis", hub.manager.core.last_error
        key = hub.manager.core.redis_ops.keys.session(session.sid)
        assert tls_server.client().exists(key) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_server_signed_by_another_ca_is_refused_with_a_clear_error(
    tls_server: TlsRedisServer, tmp_path: Path, kind: str
) -> None:
    """A CA that did not sign the server's certificate: nothing is sent to that server, and
    the reason (certificate verification) is what health reports."""
    stranger = make_certs(tmp_path, name="Some other CA")
    redis = {"TLS_CA_CERT": str(stranger.ca_cert)}

    def settings(**sections: dict[str, object]) -> object:
        return build_settings(tls_server.url, redis=redis, **sections)

    with hub_factory(kind, settings) as make:
        hub = make()
        hub.create("alice")
        assert hub.manager.core.mode == "degraded"
        assert "certificate verify failed" in (hub.health()["last_error"] or "")
