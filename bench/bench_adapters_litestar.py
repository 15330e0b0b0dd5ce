"""The Litestar app of adapter_apps.py (Litestar reads the handlers' annotations)."""

from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request, get
from litestar.params import FromPath


def make_app(
    url: str,
    side: str,
    handle: Callable[[Any, str], dict[str, Any]],
    floor_session: Callable[[], dict[str, Any]],
) -> Litestar:
    """Litestar with SessionHub's plugin, its server-side sessions on RedisStore, or none."""

    @get("/{action:str}")
    async def view(request: Request[Any, Any, Any], action: FromPath[str]) -> dict[str, Any]:
        return handle(floor_session() if side == "floor" else request.session, action)

    if side == "floor":
        return Litestar(route_handlers=[view])
    if side == "peer":
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
