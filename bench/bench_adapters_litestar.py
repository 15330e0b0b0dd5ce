"""The Litestar side of bench_adapters.py (Litestar reads the handlers' annotations)."""

from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request, get
from litestar.params import FromPath


def make_app(url: str, peer: bool, handle: Callable[[Any, str], dict[str, Any]]) -> Litestar:
    """Litestar with its server-side sessions on RedisStore (peer) or SessionHub's plugin."""

    @get("/{action:str}")
    async def view(request: Request[Any, Any, Any], action: FromPath[str]) -> dict[str, Any]:
        return handle(request.session, action)

    if peer:
        from litestar.middleware.session.server_side import ServerSideSessionConfig
        from litestar.stores.redis import RedisStore

        config = ServerSideSessionConfig()
        return Litestar(
            route_handlers=[view],
            middleware=[config.middleware],
            stores={"sessions": RedisStore.with_client(url=url)},
        )
    from sessionhub.integrations.litestar import SessionHubPlugin

    return Litestar(
        route_handlers=[view],
        plugins=[
            SessionHubPlugin(
                settings={"SECRET_KEY": "bench-secret-key-0123456789", "REDIS": {"URL": url}}
            )
        ],
    )
