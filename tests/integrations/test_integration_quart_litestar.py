"""Quart and Litestar specifics beyond the shared contract."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from helpers import build_settings

pytest.importorskip("quart")
pytest.importorskip("litestar")


def litestar_app(settings: Any) -> Any:
    """A Litestar app whose handlers return the session and replace or clear it."""
    from litestar_session_routes import make_app

    return make_app(settings)


def test_litestar_session_is_the_dict_handlers_return(redis_url: str) -> None:
    """A handler can return request.session as is (msgspec reads the stored values), and
    set_session and clear_session replace or remove the session."""
    with TestClient(litestar_app(build_settings(redis_url))) as client:
        client.post("/set", json={"a": 1, "b": [2]})
        assert client.get("/show").json() == {"a": 1, "b": [2]}
        client.post("/replace", json={"a": 1, "c": 3})
        assert client.get("/show").json() == {"a": 1, "c": 3}
        reply = client.post("/clear")
        assert "Max-Age=0" in reply.headers["set-cookie"]
        assert client.get("/show").json() == {}


def test_quart_closes_its_hub_after_serving(redis_url: str) -> None:
    """The Quart extension's hub is made inside the server's loop and closed after serving."""
    import quart

    from sessionhub.integrations.quart import HubSessionInterface, QuartSessionHub

    app = quart.Quart("t")
    app.config["SESSIONHUB"] = build_settings(redis_url)
    QuartSessionHub(app)

    @app.get("/")
    async def home() -> Any:
        quart.session["n"] = quart.session.get("n", 0) + 1
        return {"n": quart.session["n"], "new": quart.session.new}

    interface = app.session_interface
    assert isinstance(interface, HubSessionInterface)
    with TestClient(app) as client:
        assert client.get("/").json() == {"n": 1, "new": True}
        assert client.get("/").json() == {"n": 2, "new": False}
        assert interface.hubs.current is not None
    assert interface.hubs.current is None
