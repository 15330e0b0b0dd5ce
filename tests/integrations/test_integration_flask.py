"""Flask specifics: Flask-Session config keys, permanent cookies, and carrying sessions over."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

import flask
import flask_session
import pytest
import redis

import sessionhub.integrations.flask
from sessionhub.exceptions import ConfigError
from sessionhub.integrations.flask import FlaskSessionHub, flask_settings, regenerate

SECRET = "flask-secret-key-0123456789"


def make_app(config: dict[str, Any]) -> Any:
    """A Flask app with a visits counter, a permanent switch and a regenerate route."""
    app = flask.Flask("t")
    app.config.update(SECRET_KEY=SECRET, **config)

    @app.get("/visits")
    def visits() -> Any:
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return {"visits": flask.session["visits"], "new": flask.session.new}

    @app.get("/permanent")
    def permanent() -> Any:
        flask.session.permanent = True
        return {"permanent": flask.session.permanent}

    @app.get("/regenerate")
    def regen() -> Any:
        regenerate()
        return {}

    @app.get("/ids")
    def ids() -> Any:
        return {"sid": flask.session.sid, "storage_id": flask.session.storage_id}

    @app.get("/nested")
    def nested() -> Any:
        flask.session.setdefault("items", [])
        flask.session["items"].append(len(flask.session["items"]))  # in-place edit
        return {"items": flask.session["items"], "modified": flask.session.modified}

    return app


@pytest.fixture
def apps() -> Iterator[list[Any]]:
    """Apps made by a test; their hubs are closed afterwards."""
    made: list[Any] = []
    yield made
    for app in made:
        app.session_interface.hub.close()
        if app.session_interface.migrator is not None:
            app.session_interface.migrator.close()


def hub_app(apps: list[Any], config: dict[str, Any]) -> Any:
    """A test app with SessionHub installed."""
    app = make_app(config)
    FlaskSessionHub(app)
    apps.append(app)
    return app


def test_the_extension_has_its_own_name() -> None:
    """The extension is FlaskSessionHub; the hub's name SessionHub is not importable from here."""
    assert "FlaskSessionHub" in sessionhub.integrations.flask.__all__
    assert not hasattr(sessionhub.integrations.flask, "SessionHub")
    with pytest.raises(ImportError, match="SessionHub"):
        exec("from sessionhub.integrations.flask import SessionHub", {})  # noqa: S102


def test_flask_session_keys_are_read(redis_url: str) -> None:
    """SESSION_REDIS, SESSION_KEY_PREFIX, PERMANENT_SESSION_LIFETIME and cookie keys map over."""
    client = redis.Redis.from_url(redis_url)
    try:
        settings = flask_settings(
            {
                **flask.Flask.default_config,
                "SECRET_KEY": SECRET,
                "SESSION_TYPE": "redis",
                "SESSION_REDIS": client,
                "SESSION_KEY_PREFIX": "app:",
                "SESSION_PERMANENT": False,
                "SESSION_USE_SIGNER": True,
                "PERMANENT_SESSION_LIFETIME": datetime.timedelta(hours=1),
                "SESSION_COOKIE_NAME": "sid",
                "SESSION_COOKIE_SECURE": True,
            }
        )
    finally:
        client.close()
    assert settings.redis.connection_url() == redis_url
    assert settings.session.key_prefix == "app:"
    assert settings.session.expires == 3600
    assert settings.session.permanent is False
    assert settings.session.cookie_name == "sid"
    assert settings.session.cookie_secure is True
    assert settings.secret_key is not None


def test_sessionhub_keys_win_over_flask_keys() -> None:
    """Explicit SESSIONHUB settings are not overridden by Flask-Session's spelling."""
    settings = flask_settings(
        {"SESSIONHUB": {"SESSION": {"KEY_PREFIX": "hub:"}}, "SESSION_KEY_PREFIX": "flask:"}
    )
    assert settings.session.key_prefix == "hub:"


def test_unsupported_session_type_is_a_config_error() -> None:
    """SESSION_TYPE other than redis or memory fails at startup with a clear message."""
    with pytest.raises(ConfigError, match="SESSION_TYPE"):
        flask_settings({"SESSION_TYPE": "filesystem"})


def test_refresh_each_request_false_is_named_not_silently_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SESSION_REFRESH_EACH_REQUEST = False logs what SessionHub does instead and what to set."""
    with caplog.at_level("WARNING", logger="sessionhub.flask"):
        flask_settings({"SESSION_REFRESH_EACH_REQUEST": True})
        assert not caplog.records
        flask_settings({"SESSION_REFRESH_EACH_REQUEST": False})
    (record,) = caplog.records
    assert "SESSION_REFRESH_EACH_REQUEST = False is not applied" in record.getMessage()
    assert "REFRESH_THRESHOLD" in record.getMessage()


def test_permanent_sets_max_age_and_nested_edits_are_saved(redis_url: str, apps: list[Any]) -> None:
    """session.permanent gives the cookie a Max-Age; in-place edits of values are detected."""
    app = hub_app(apps, {"SESSIONHUB": {"REDIS": {"URL": redis_url}}})
    client = app.test_client()
    reply = client.get("/permanent")
    assert "Max-Age=" in reply.headers["Set-Cookie"]
    assert client.get("/nested").json == {"items": [0], "modified": True}
    assert client.get("/nested").json == {"items": [0, 1], "modified": True}
    assert client.get("/visits").json == {"visits": 1, "new": False}


def test_session_new_until_saved(redis_url: str, apps: list[Any]) -> None:
    """session.new is true on the request that creates the session, false afterwards."""
    app = hub_app(apps, {"SESSIONHUB": {"REDIS": {"URL": redis_url}}})
    client = app.test_client()
    assert client.get("/visits").json == {"visits": 1, "new": True}
    assert client.get("/visits").json == {"visits": 2, "new": False}
    old = client.get_cookie("session").value
    client.get("/regenerate")
    assert client.get_cookie("session").value != old
    assert client.get("/visits").json == {"visits": 3, "new": False}


def test_sid_is_flask_sessions_name_for_the_storage_id(redis_url: str, apps: list[Any]) -> None:
    """flask.session.sid (Flask-Session's attribute) and storage_id both name the stored session's
    storage id, never the cookie's token."""
    app = hub_app(apps, {"SESSIONHUB": {"REDIS": {"URL": redis_url}}})
    client = app.test_client()
    assert client.get("/ids").json == {"sid": "", "storage_id": ""}
    client.get("/visits")
    cookie = client.get_cookie("session").value
    expected = app.session_interface.hub.manager.storage_id_for_cookie(cookie)
    assert client.get("/ids").json == {"sid": expected, "storage_id": expected}
    assert expected not in cookie


@pytest.mark.parametrize("use_signer", [False, True])
def test_flask_session_08_cookies_are_carried_over_once(
    redis_url: str, apps: list[Any], use_signer: bool
) -> None:
    """A cookie Flask-Session 0.8 issued keeps its data after the switch, and only once."""
    raw = redis.Redis.from_url(redis_url)
    old_config = {
        "SESSION_TYPE": "redis",
        "SESSION_REDIS": raw,
        "SESSION_USE_SIGNER": use_signer,
    }
    old_app = make_app(old_config)
    with (
        pytest.warns(DeprecationWarning, match="use_signer")
        if use_signer
        else contextlib.nullcontext()
    ):
        flask_session.Session(old_app)
    old_client = old_app.test_client()
    assert old_client.get("/visits").json["visits"] == 1
    assert old_client.get("/visits").json["visits"] == 2
    old_cookie = old_client.get_cookie("session").value
    assert raw.exists("session:" + old_cookie.split(".")[0])

    new_app = hub_app(apps, {**old_config, "SESSION_MIGRATE_FROM_FLASK_SESSION": True})
    client = new_app.test_client()
    client.set_cookie("session", old_cookie)
    assert client.get("/visits").json == {"visits": 3, "new": False}
    assert client.get_cookie("session").value != old_cookie
    assert client.get("/visits").json["visits"] == 4
    assert not raw.exists("session:" + old_cookie.split(".")[0])

    replay = new_app.test_client()
    replay.set_cookie("session", old_cookie)
    assert replay.get("/visits").json == {"visits": 1, "new": True}
    raw.close()
