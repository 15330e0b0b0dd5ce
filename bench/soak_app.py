"""The service as ``sessionhub serve`` builds it, plus one route for session data (soak only).

The HTTP API has no endpoint that writes a session's own data (applications do that through
the library), so the soak adds one here, built from the service's own pieces, to put that path
under the same chaos as the rest.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sessionhub.config import load_settings
from sessionhub.exceptions import DataError
from sessionhub.hub import AsyncSessionHub
from sessionhub.service.app import create_app
from sessionhub.service.bodies import read_json
from sessionhub.service.errors import ApiError, ok
from sessionhub.service.routes import current_session

MAX_BODY = 65536


async def get_data(request: Request) -> Response:
    session = await current_session(request, touch=False)
    return ok(dict(session))


async def put_data(request: Request) -> Response:
    session = await current_session(request, touch=False)
    body = await read_json(request, MAX_BODY)
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object of session keys")
    try:
        session.update(body)
    except DataError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc
    hub: AsyncSessionHub = request.app.state.hub
    if not await hub.save(session):
        raise ApiError(401, "session_expired", "the session has expired or was logged out")
    return ok(dict(session))


def create() -> Starlette:
    """Factory for ``uvicorn --factory soak_app:create``: settings from the environment."""
    app = create_app(load_settings())
    app.router.routes += [
        Route("/soak/session/data", get_data, methods=["GET"]),
        Route("/soak/session/data", put_data, methods=["PUT"]),
    ]
    return app
