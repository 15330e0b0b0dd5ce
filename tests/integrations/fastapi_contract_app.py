"""The contract app on FastAPI, reading the session through the dependency.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations.
"""

from typing import Annotated, Any

from contract_apps import ameet, apply_route
from fastapi import Body, Depends, FastAPI

from sessionhub.config import Settings
from sessionhub.integrations.asgi import (
    RequestSession,
    SessionMiddleware,
    current_session,
    current_user,
)

Session = Annotated[RequestSession, Depends(current_session)]


def make_app(settings: Settings) -> FastAPI:
    """A FastAPI app with the SessionHub middleware and the contract routes."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, settings=settings)

    @app.get("/whoami/user")
    async def whoami(user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
        return {"user": user}

    @app.get("/{route}")
    async def read(route: str, session: Session) -> dict[str, Any]:
        return apply_route(route, session, {})

    @app.post("/{route}")
    async def write(
        route: str, session: Session, payload: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        await ameet(payload)
        return apply_route(route, session, payload)

    return app
