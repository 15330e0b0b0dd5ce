"""Litestar routes that return, replace and clear the session (Litestar reads annotations)."""

from typing import Any

from litestar import Litestar, Request, get, post
from litestar.params import JSONBody

from sessionhub.config import Settings
from sessionhub.integrations.litestar import SessionHubPlugin


def make_app(settings: Settings) -> Litestar:
    """The app: /set merges the body in, /show returns the session, /replace and /clear."""

    @post("/set", status_code=200)
    async def set_values(request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> None:
        request.session.update(data)

    @get("/show")
    async def show(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return request.session

    @post("/replace", status_code=200)
    async def replace(request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> None:
        request.set_session(data)

    @post("/clear", status_code=200)
    async def clear(request: Request[Any, Any, Any]) -> None:
        request.clear_session()

    handlers = [set_values, show, replace, clear]
    return Litestar(route_handlers=handlers, plugins=[SessionHubPlugin(settings=settings)])
