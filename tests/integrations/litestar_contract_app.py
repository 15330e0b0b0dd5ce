"""The contract app on Litestar, with SessionHub's plugin.

No ``from __future__ import annotations`` here: Litestar reads the handlers' annotations.
"""

import json
from typing import Any

from contract_apps import ameet, apply_route
from litestar import Litestar, Request, route
from litestar.params import FromPath

from sessionhub.config import Settings
from sessionhub.integrations.litestar import RequestSession, SessionHubPlugin


def make_app(settings: Settings) -> Litestar:
    """A Litestar app with the SessionHub plugin and the contract routes."""

    @route("/{name:str}", http_method=["GET", "POST"], status_code=200)
    async def view(request: Request[Any, Any, Any], name: FromPath[str]) -> dict[str, Any]:
        payload = json.loads(await request.body() or b"{}")
        await ameet(payload)
        session = request.session
        assert isinstance(session, RequestSession)
        return apply_route(name, session, payload)

    return Litestar(route_handlers=[view], plugins=[SessionHubPlugin(settings=settings)])
