"""The same Flask app under Flask-Session 0.8 and under SessionHub, request for request.

Each configuration runs one sequence of requests against both. Everything an application or a
browser can observe is compared: status, body, each ``Set-Cookie`` attribute, ``Vary``, the
session's Redis expiry, and the session attributes applications use. The differences that remain
are decisions documented in ``docs/INTEGRATIONS.md`` ("Differences from Flask-Session"), and each
is applied below as an explicit rule (:func:`expected_from_flask_session`) before comparing, so a
difference that is not one of them fails the test.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest

flask = pytest.importorskip("flask")
flask_session = pytest.importorskip("flask_session")

import redis  # noqa: E402

from sessionhub.integrations.flask import FlaskSessionHub  # noqa: E402

SECRET = "differential-secret-key-0123456789"
FLASK_LIFETIME = 31 * 24 * 3600
"""Flask's default PERMANENT_SESSION_LIFETIME, which Flask-Session uses when it is not set."""
HUB_EXPIRES = 7200
"""SessionHub's default SESSION.EXPIRES: the lifetime when PERMANENT_SESSION_LIFETIME is unset."""

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "permanent": {"SESSION_PERMANENT": True},
    "not-permanent": {"SESSION_PERMANENT": False},
    "lifetime-int": {"SESSION_PERMANENT": True, "PERMANENT_SESSION_LIFETIME": 600},
    "lifetime-timedelta": {
        "SESSION_PERMANENT": True,
        "PERMANENT_SESSION_LIFETIME": datetime.timedelta(minutes=20),
    },
    "lifetime-not-permanent": {"SESSION_PERMANENT": False, "PERMANENT_SESSION_LIFETIME": 900},
    "signer": {"SESSION_PERMANENT": True, "SESSION_USE_SIGNER": True},
    "key-prefix": {"SESSION_PERMANENT": True, "SESSION_KEY_PREFIX": "app:"},
    "cookie-keys": {
        "SESSION_PERMANENT": True,
        "SESSION_COOKIE_NAME": "sid",
        "SESSION_COOKIE_DOMAIN": "example.com",
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": False,
        "SESSION_COOKIE_SAMESITE": "Strict",
    },
    "samesite-none-partitioned": {
        "SESSION_PERMANENT": True,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_SAMESITE": "None",
        "SESSION_COOKIE_PARTITIONED": True,
    },
    "no-refresh": {"SESSION_PERMANENT": True, "SESSION_REFRESH_EACH_REQUEST": False},
    "explicit-type": {"SESSION_PERMANENT": True, "SESSION_TYPE": "redis"},
}

STEPS = [
    "read",  # nothing stored yet: no cookie, no key
    "set-a",  # first value: the session and its cookie are created
    "read",
    "untouched",  # a view that never looks at the session
    "set-a",  # the same value again: modified, nothing new to store
    "set-b",
    "permanent-on",
    "read",
    "pop-a",
    "clear",  # emptied: deleted, cookie cleared
    "read",
]


def make_app(config: dict[str, Any], redis_url: str, extension: str) -> Any:
    """The app under test, with Flask-Session's ``Session`` or SessionHub's extension."""
    app = flask.Flask(f"differential-{extension}")
    app.config.update(
        {
            "SECRET_KEY": SECRET,
            "SESSION_TYPE": "redis",
            "SESSION_REDIS": redis.Redis.from_url(redis_url),
            **config,
        }
    )

    @app.get("/<step>")
    def view(step: str) -> Any:
        session = flask.session
        if step == "read":
            data = {k: session[k] for k in session if k != "_permanent"}
        elif step == "untouched":
            return {"ok": True}
        else:
            data = {}
            if step == "set-a":
                session["a"] = 1
            elif step == "set-b":
                session["b"] = [1, 2]
            elif step == "permanent-on":
                session.permanent = True
            elif step == "pop-a":
                session.pop("a", None)
            elif step == "clear":
                session.clear()
        return {
            "data": data,
            "modified": session.modified,
            "accessed": session.accessed,
            "permanent": session.permanent,
            "new": session.new,
            "has_sid": bool(session.sid),
        }

    if extension == "flask-session":
        flask_session.Session(app)
    else:
        FlaskSessionHub(app)
    return app


def cookie_attributes(header: str, before: float, after: float) -> dict[str, Any]:
    """A Set-Cookie header as attributes; Expires as whole seconds after the request."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(re.sub(r";\s*Partitioned", "", header, flags=re.IGNORECASE))  # unknown to http.cookies
    [(name, morsel)] = jar.items()
    out: dict[str, Any] = {"name": name, "value": "set" if morsel.value else "cleared"}
    for attr in ("path", "domain", "samesite", "secure", "httponly"):
        out[attr] = morsel[attr] or None
    out["partitioned"] = "partitioned" in header.lower()
    if morsel["expires"] and morsel.value:
        when = email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
        # The instant is computed during the request: bracket it by the request's own times.
        low, high = int(when - after) - 1, int(when - before) + 1
        out["expires_in"] = (low, high)
    out["max_age"] = int(morsel["max-age"]) if morsel["max-age"] else None
    return out


class Run:
    """One app driven through the steps, recording what each response showed."""

    def __init__(self, app: Any, redis_url: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.redis = redis.Redis.from_url(redis_url)
        self.cookie_name = app.config["SESSION_COOKIE_NAME"]

    def key_ttl(self) -> int | None:
        """Seconds until the session's Redis key expires (None: no session key)."""
        cookie = self.client.get_cookie(self.cookie_name, domain=self._domain())
        if cookie is None:
            return None
        interface = self.app.session_interface
        if hasattr(interface, "hub"):
            storage_id = interface.hub.manager.storage_id_for_cookie(cookie.value)
            key = interface.hub.manager.core.redis_ops.keys.session(storage_id)
        else:
            value = cookie.value
            if interface.use_signer:
                value = interface._unsign(self.app, value)
            key = interface._get_store_id(value)
        ttl = int(self.redis.ttl(key))
        return None if ttl < 0 else ttl

    def _domain(self) -> str:
        return self.app.config.get("SESSION_COOKIE_DOMAIN") or "localhost"

    def step(self, name: str) -> dict[str, Any]:
        """Send one request; what the response and Redis show afterwards."""
        base = f"https://{self._domain()}"
        before = time.time()
        reply = self.client.get(f"/{name}", base_url=base)
        after = time.time()
        cookies = [cookie_attributes(h, before, after) for h in reply.headers.getlist("Set-Cookie")]
        return {
            "status": reply.status_code,
            "body": reply.get_json(),
            "set_cookie": cookies,
            "vary": reply.headers.get("Vary"),
            "ttl": self.key_ttl(),
        }

    def close(self) -> None:
        """Release the app's clients (and SessionHub's hub)."""
        interface = self.app.session_interface
        if hasattr(interface, "hub"):
            interface.hub.close()
        self.app.config["SESSION_REDIS"].close()
        self.redis.close()


def expected_from_flask_session(
    config: dict[str, Any], fs: dict[str, Any], step: str, hub_stored: bool, hub_permanent: bool
) -> dict[str, Any]:
    """What SessionHub shows where Flask-Session showed ``fs``: Flask-Session's observation with
    each documented difference applied (docs/INTEGRATIONS.md, "Differences from Flask-Session").
    ``hub_stored``: whether SessionHub held the session when the request came in;
    ``hub_permanent``: whether SessionHub's session is permanent after the request.
    """
    out = {**fs, "body": dict(fs["body"] or {}), "set_cookie": [dict(c) for c in fs["set_cookie"]]}
    lifetime = config.get("PERMANENT_SESSION_LIFETIME")
    if isinstance(lifetime, datetime.timedelta):
        lifetime = int(lifetime.total_seconds())
    body = out["body"]
    if "new" in body:
        # 1. session.new: always False in Flask-Session (SessionMixin's default); SessionHub's
        #    is True until the session has been stored once.
        body["new"] = not hub_stored
        # 2. session.sid: Flask-Session makes one for every visitor; SessionHub's exists once
        #    the session is stored (an empty session stores nothing).
        body["has_sid"] = hub_stored
        # 3. SESSION_PERMANENT unset: SessionHub's default is False, Flask-Session's True.
        body["permanent"] = hub_permanent
    if not hub_permanent:
        # 3. again: a browser-session cookie has no lifetime, so it is sent only when the
        #    session changes (Flask's rule for sessions that are not permanent).
        changed = bool(out["body"].get("modified"))
        out["set_cookie"] = [
            {**c, "expires_in": None} if c["value"] == "set" else c
            for c in out["set_cookie"]
            if changed or c["value"] == "cleared"
        ]
        if not out["set_cookie"] and not out["body"].get("accessed"):
            out["vary"] = None  # Flask-Session's Vary came with the cookie it refreshed
    for cookie in out["set_cookie"]:
        # 4. SESSION_COOKIE_SAMESITE unset: SameSite=Lax, not Flask's "no attribute".
        cookie["samesite"] = config.get("SESSION_COOKIE_SAMESITE", "Lax")
        # 5. Partitioned (Flask 3.1's SESSION_COOKIE_PARTITIONED) is honoured; Flask-Session
        #    0.8 leaves it out.
        cookie["partitioned"] = bool(config.get("SESSION_COOKIE_PARTITIONED"))
        if cookie["value"] == "cleared":
            # 6. A cleared cookie carries the attributes the cookie was set with (Flask-Session
            #    sends only Path and Domain): a SameSite=None cookie must be cleared as Secure.
            cookie["httponly"] = config.get("SESSION_COOKIE_HTTPONLY", True) or None
            cookie["secure"] = config.get("SESSION_COOKIE_SECURE") or None
            continue
        if cookie.get("expires_in") is None:
            cookie.pop("expires_in", None)
            continue
        # 7. Max-Age is sent with Expires (the same instant), so a client whose clock is off
        #    keeps the cookie as long as the server keeps the session.
        assert cookie["max_age"] is None
        cookie["max_age"] = "within"
        low, high = cookie["expires_in"]
        assert low <= (lifetime or FLASK_LIFETIME) <= high
        # 8. Without PERMANENT_SESSION_LIFETIME the lifetime is SessionHub's idle timeout
        #    (EXPIRES, 2 hours), not Flask's 31-day default; with it, both use it.
        cookie["expires_in"] = lifetime or HUB_EXPIRES
    if out["ttl"] is not None:
        out["ttl"] = lifetime or HUB_EXPIRES  # 8. again, for the session in Redis
    return out


def normalised_hub(hub: dict[str, Any]) -> dict[str, Any]:
    """SessionHub's observation in the rules' terms: Expires as the lifetime it was set to, and
    Max-Age checked against it ("within": the same instant)."""
    out = {**hub, "set_cookie": [dict(c) for c in hub["set_cookie"]]}
    for cookie in out["set_cookie"]:
        if cookie["value"] == "cleared":
            assert cookie["max_age"] == 0
            continue
        if "expires_in" in cookie and cookie["max_age"] is not None:
            low, high = cookie["expires_in"]
            assert low <= cookie["max_age"] <= high, cookie
            cookie["expires_in"] = cookie["max_age"]
            cookie["max_age"] = "within"
    if out["ttl"] is not None:
        out["ttl"] = _rounded_ttl(out["ttl"])
    return out


def _rounded_ttl(ttl: int) -> int:
    # Redis counts down while the test runs: a TTL read a moment later is a second short.
    return ttl + 1 if ttl % 60 == 59 else ttl


@pytest.fixture(params=sorted(CONFIGS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One configuration, applied to both apps."""
    return CONFIGS[str(request.param)]


@pytest.fixture
def runs(config: dict[str, Any], redis_url: str) -> Iterator[tuple[Run, Run]]:
    """The app under Flask-Session and under SessionHub, each with a client."""
    fs = Run(make_app(config, redis_url, "flask-session"), redis_url)
    hub = Run(make_app(config, redis_url, "sessionhub"), redis_url)
    yield fs, hub
    fs.close()
    hub.close()


def test_same_requests_same_observations(
    config: dict[str, Any], runs: tuple[Run, Run], caplog: pytest.LogCaptureFixture
) -> None:
    """Request for request, SessionHub shows what Flask-Session shows, apart from the
    documented differences."""
    fs_run, hub_run = runs
    stored = False  # whether SessionHub held the session when the request came in
    default = permanent = bool(config.get("SESSION_PERMANENT", False))
    for index, step in enumerate(STEPS):
        fs = fs_run.step(step)
        if fs["ttl"] is not None:
            fs["ttl"] = _rounded_ttl(fs["ttl"])
        hub = hub_run.step(step)
        # 9. clear() removes the permanent flag too (as dict.clear and Flask's own session
        #    do; Flask-Session keeps it): the emptied session is deleted either way.
        permanent = default if step == "clear" else permanent or step == "permanent-on"
        expected = expected_from_flask_session(config, fs, step, stored, permanent)
        assert normalised_hub(hub) == expected, f"step {index} ({step})"
        stored = hub["ttl"] is not None


def test_in_place_edits_count_as_modified(redis_url: str) -> None:
    """10. An in-place edit of a stored value (``session["b"].append(3)``) is a change to
    SessionHub, reported by ``modified`` and saved in any case; Flask-Session does not mark it
    (it saves it only because SESSION_REFRESH_EACH_REQUEST rewrites the whole session)."""
    results = {}
    for extension in ("flask-session", "sessionhub"):
        app = make_app({"SESSION_PERMANENT": True}, redis_url, extension)

        @app.get("/append")
        def append() -> Any:
            flask.session["b"].append(3)
            return {"modified": flask.session.modified}

        run = Run(app, redis_url)
        try:
            run.step("set-b")
            modified = run.step("append")["body"]["modified"]
            results[extension] = (modified, run.step("read")["body"]["data"]["b"])
        finally:
            run.close()
    assert results == {"flask-session": (False, [1, 2, 3]), "sessionhub": (True, [1, 2, 3])}
