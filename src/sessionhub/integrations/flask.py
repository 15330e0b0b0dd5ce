"""Flask: server-side sessions behind ``flask.session``, configured like Flask-Session.

Switching from Flask-Session is a change of import::

    # was: from flask_session import Session; Session(app)
    from sessionhub.integrations.flask import FlaskSessionHub
    FlaskSessionHub(app)                       # or FlaskSessionHub().init_app(app)

Configuration comes from ``app.config``: the SessionHub settings in ``SESSIONHUB`` (a
:class:`~sessionhub.config.Settings` or an UPPERCASE mapping like ``config.yaml``) win; Flask and
Flask-Session keys fill in the rest: ``SECRET_KEY``, ``SESSION_TYPE`` (``redis``/``memory``),
``SESSION_REDIS`` (any redis-py client: one server, ``Sentinel.master_for`` or ``RedisCluster``),
``SESSION_PERMANENT``, ``SESSION_USE_SIGNER``, ``SESSION_KEY_PREFIX``,
``PERMANENT_SESSION_LIFETIME`` (idle timeout) and ``SESSION_COOKIE_*``. With
``SESSION_MIGRATE_FROM_FLASK_SESSION = True`` a cookie that Flask-Session issued is carried over,
once, to a SessionHub session. See ``docs/INTEGRATIONS.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import flask
import redis
import redis.cluster
from flask.sessions import SessionInterface, SessionMixin
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, Signer
from redis.exceptions import RedisClusterException
from werkzeug.sansio.response import Response as WerkzeugResponse

from ..config import SessionSettings, Settings
from ..exceptions import ConfigError, InvalidTokenError, ReauthRequiredError
from ..hub import SessionHub as BlockingHub
from ..jsontext import compact
from ..session import Session
from ..stores.topology import HeldSyncClient, held, ready, sync_client
from .atomic import NO_HUB, BlockingRequestSession
from .base import (
    PERMANENT_KEY,
    CookieAction,
    RequestSession,
    commit,
    cookie_max_age,
    merge_settings,
)
from .session_redis import WHERE_KEYS, redis_section

__all__ = [
    "FlaskSession",
    "FlaskSessionHub",
    "HubSessionInterface",
    "current_user_id",
    "flask_settings",
    "login_user",
    "logout_user",
    "reauthenticate",
    "regenerate",
    "require_fresh",
]

log = logging.getLogger("sessionhub.flask")

EXTENSION_KEY = "sessionhub"
_MISSING = object()


class FlaskSession(BlockingRequestSession, SessionMixin):  # type: ignore[override]
    """``flask.session``: a :class:`RequestSession` that Flask recognises as a session, with
    ``increment``, ``append`` and ``lock`` (:mod:`.atomic`)."""

    @property
    def sid(self) -> str:
        """Flask-Session's ``session.sid``: here the :attr:`storage_id` (Flask-Session's is the
        cookie's token itself), so logging it leaks nothing."""
        return self.storage_id

    def _hub(self) -> BlockingHub:
        # Found only when a helper asks: opening the session stays as cheap as it was.
        interface = flask.current_app.session_interface
        if not isinstance(interface, HubSessionInterface):
            raise RuntimeError(NO_HUB)
        return interface.hub


def _explicit(config: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> Any:
    """The value of ``key`` if the app set it (differs from the framework's default), else
    _MISSING."""
    if key not in config:
        return _MISSING
    value = config[key]
    if key in defaults and value == defaults[key]:
        return _MISSING
    return value


def _redis_of(base: Settings | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``REDIS`` keys that the SessionHub settings ``base`` set themselves (UPPERCASE)."""
    if isinstance(base, Settings):
        section: Any = base.model_dump(by_alias=True, exclude_unset=True).get("REDIS", {})
    else:
        section = (base or {}).get("REDIS") or {}
    return {str(key).upper(): value for key, value in dict(section).items()}


def _from_session_redis(client: Any, base: Settings | Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``SESSION_REDIS`` adds to the ``REDIS`` section: where its client goes, unless the
    SessionHub settings say where Redis is themselves (they win as a whole: its credentials
    may be another server's)."""
    own = _redis_of(base)
    if client is None or own.keys() & WHERE_KEYS:
        return {}
    section = redis_section(client)
    mode = str(own.get("MODE", section.get("MODE", "standalone")))
    if mode != section.get("MODE", "standalone"):
        raise ConfigError(
            f"SESSIONHUB's REDIS.MODE is {mode} but SESSION_REDIS is a "
            f"{section.get('MODE', 'standalone')} client: give SessionHub's REDIS section where "
            "Redis is (SENTINELS and SENTINEL_MASTER, or CLUSTER_NODES), or a SESSION_REDIS of "
            "that topology"
        )
    return section


def flask_settings(
    config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> Settings:
    """SessionHub settings for a Flask (or Quart) app: ``SESSIONHUB`` first, then Flask(-Session)
    keys; ``defaults`` is the framework's ``default_config`` (Flask's unless given)."""
    if defaults is None:
        defaults = flask.Flask.default_config
    session: dict[str, Any] = {}
    kind = _explicit(config, "SESSION_TYPE", defaults)
    if kind is not _MISSING:
        kind = str(kind).lower()
        if kind not in ("redis", "memory"):
            raise ConfigError(
                f"SESSION_TYPE = {kind!r}: SessionHub stores sessions in 'redis' (with an "
                "in-memory fallback) or 'memory'"
            )
        session["TYPE"] = kind
    simple = {
        "SESSION_PERMANENT": "PERMANENT",
        "SESSION_USE_SIGNER": "USE_SIGNER",
        "SESSION_KEY_PREFIX": "KEY_PREFIX",
        "SESSION_COOKIE_NAME": "COOKIE_NAME",
        "SESSION_COOKIE_DOMAIN": "COOKIE_DOMAIN",
        "SESSION_COOKIE_PATH": "COOKIE_PATH",
        "SESSION_COOKIE_HTTPONLY": "COOKIE_HTTPONLY",
        "SESSION_COOKIE_SECURE": "COOKIE_SECURE",
        "SESSION_COOKIE_SAMESITE": "COOKIE_SAMESITE",
        "SESSION_COOKIE_PARTITIONED": "COOKIE_PARTITIONED",
    }
    for flask_key, key in simple.items():
        value = _explicit(config, flask_key, defaults)
        if value is _MISSING or value is None or (key == "COOKIE_DOMAIN" and value is False):
            continue
        session[key] = value
    lifetime = _explicit(config, "PERMANENT_SESSION_LIFETIME", defaults)
    if lifetime is not _MISSING:
        seconds = (
            int(lifetime.total_seconds())
            if isinstance(lifetime, datetime.timedelta)
            else int(lifetime)
        )
        session["EXPIRES"] = seconds
        session["ABSOLUTE_LIFETIME"] = max(seconds, 604800)
    if _explicit(config, "SESSION_REFRESH_EACH_REQUEST", defaults) is False:
        # Not mapped: without a slide on reads, an active user would be logged out one idle
        # timeout after their last *change*. REFRESH_THRESHOLD saves the same writes safely.
        log.warning(
            "SESSION_REFRESH_EACH_REQUEST = False is not applied: SessionHub extends the idle "
            "timeout on each request that loads the session. To write less often, set "
            "SESSIONHUB = {'SESSION': {'REFRESH_THRESHOLD': <seconds>}}"
        )
    secret = config.get("SECRET_KEY")
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", "surrogateescape")
    base = config.get("SESSIONHUB")
    if base is not None and not isinstance(base, (Settings, Mapping)):
        raise ConfigError("SESSIONHUB must be a sessionhub Settings or a mapping of UPPERCASE keys")
    redis_keys = _from_session_redis(config.get("SESSION_REDIS"), base)
    return merge_settings(base, SECRET_KEY=secret, SESSION=session, REDIS=redis_keys)


class FlaskSessionMigrator:
    """Reads a session that Flask-Session 0.8 wrote (msgpack or JSON) and deletes it."""

    def __init__(self, app: flask.Flask, settings: Settings) -> None:
        try:
            import msgpack  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - msgpack comes with the flask extra
            raise ConfigError(
                "SESSION_MIGRATE_FROM_FLASK_SESSION needs msgpack: pip install sessionhub[flask]"
            ) from exc
        self._unpack = msgpack.unpackb
        self.prefix = str(app.config.get("SESSION_KEY_PREFIX", settings.session.key_prefix))
        self.use_signer = bool(app.config.get("SESSION_USE_SIGNER", False))
        self.app = app
        client = app.config.get("SESSION_REDIS")
        self.client: HeldSyncClient
        if isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            self.client, self._own = held(client), False
        else:
            # Without a client of its own, Flask-Session kept its sessions where SessionHub keeps
            # them now (any topology); read as bytes: they are msgpack.
            self.client = sync_client(settings.redis, decode_responses=False)
            self._own = True

    def _sid(self, cookie: str) -> str | None:
        if not self.use_signer:
            return cookie
        if not self.app.secret_key:
            return None
        signer = Signer(self.app.secret_key, salt="flask-session", key_derivation="hmac")
        try:
            return signer.unsign(cookie).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def _decode(self, raw: bytes | str) -> dict[str, Any] | None:
        for decode in (lambda b: self._unpack(b, raw=False), json.loads):
            with contextlib.suppress(Exception):
                value = decode(raw)
                if isinstance(value, dict):
                    return value
        return None  # pickled (Flask-Session < 0.7) data is never unpickled

    def take(self, cookie: str) -> dict[str, Any] | None:
        """The data of the Flask-Session session ``cookie`` names, removed from Redis; or None."""
        sid = self._sid(cookie)
        if not sid or "{" in sid or len(sid) > 256:
            return None
        key = self.prefix + sid
        try:
            raw = ready(self.client).getdel(key)  # taken once, even by two requests at once
        except (redis.RedisError, RedisClusterException):
            return None
        if not raw:
            return None
        data = self._decode(raw)
        if data is None:
            log.warning("Flask-Session data under %s... could not be decoded", key[:16])
            return None
        kept: dict[str, Any] = {}
        for name, value in data.items():
            try:
                compact(value)  # what the session store will write: NaN refused too
            except (TypeError, ValueError):
                log.warning("Flask-Session key %r is not JSON-serialisable: dropped", name)
                continue
            kept[str(name)] = value
        return kept

    def close(self) -> None:
        """Close the connection pool (only the one this migrator made)."""
        if self._own:
            self.client.close()


class HubSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` over a blocking :class:`sessionhub.hub.SessionHub`."""

    def __init__(self, hub: BlockingHub, migrator: FlaskSessionMigrator | None = None) -> None:
        self.hub = hub
        self.migrator = migrator

    def open_session(self, app: flask.Flask, request: flask.Request) -> FlaskSession:
        ss = self.hub.settings.session
        cookie = request.cookies.get(ss.cookie_name)
        session: Session | None = None
        issued: str | None = None
        if cookie:
            with contextlib.suppress(InvalidTokenError):
                session = self.hub.open(cookie)
            if session is None and self.migrator is not None:
                data = self.migrator.take(cookie)
                if data is not None:
                    if bool(data.get(PERMANENT_KEY, ss.permanent)) == ss.permanent:
                        data.pop(PERMANENT_KEY, None)
                    session, issued = self.hub.create(
                        data=data, user_agent=_user_agent(request), ip=_ip(request)
                    )
        rs = request_session(ss, session, cookie, FlaskSession)
        rs.issued_cookie = issued
        return rs

    def save_session(
        self, app: flask.Flask, session: SessionMixin, response: flask.Response
    ) -> None:
        if not isinstance(session, RequestSession):  # pragma: no cover - not ours
            return
        request = flask.request
        action = self.hub.run(
            commit(
                self.hub.manager,
                session,
                user_agent=_user_agent(request),
                ip=_ip(request),
            )
        )
        ss = self.hub.settings.session
        refresh = self.should_set_cookie(app, session)
        send_cookie(ss, session, action, request.cookies.get(ss.cookie_name), refresh, response)

    def regenerate(self, session: SessionMixin) -> None:
        """Flask-Session's ``app.session_interface.regenerate(session)``."""
        if isinstance(session, RequestSession):
            session.regenerate()


S = TypeVar("S", bound=RequestSession)


def request_session(
    ss: SessionSettings, session: Session | None, cookie: str | None, kind: type[S]
) -> S:
    """The session a Flask or Quart handler sees (a ``kind``), opened from ``cookie``."""
    return kind(
        session,
        had_cookie=bool(cookie),
        permanent_default=ss.permanent,
        # Flask-Session's cookie lives PERMANENT_SESSION_LIFETIME (EXPIRES here) from each
        # request that sends it, as long as the session it names stays idle on the server.
        cookie_max_age=ss.cookie_max_age or ss.expires,
    )


def send_cookie(
    ss: SessionSettings,
    session: RequestSession,
    action: CookieAction,
    request_cookie: str | None,
    refresh: bool,
    response: WerkzeugResponse,
) -> None:
    """Put what ``action`` says on a Flask or Quart response, by Flask's rules.

    ``refresh`` is Flask's ``should_set_cookie``: a permanent session's cookie is sent again on
    every request (``SESSION_REFRESH_EACH_REQUEST``), its lifetime counted from now, as the
    server counts the session's.
    """
    # Each `response.vary` parses the header anew: it is added once, where Flask-Session's order
    # of headers has it.
    if session.accessed or action.clear:
        response.vary.add("Cookie")
    if action.clear:
        response.delete_cookie(ss.cookie_name, **ss.cookie_attributes())
        return
    value, max_age = action.set_value, action.max_age
    if value is None and session.stored and refresh:
        value, max_age = request_cookie, cookie_max_age(session)
    if value is not None:
        response.set_cookie(ss.cookie_name, value, max_age=max_age, **ss.cookie_attributes())
        if not session.accessed:
            response.vary.add("Cookie")


def _ip(request: flask.Request) -> str:
    return request.remote_addr or ""


def _user_agent(request: flask.Request) -> str:
    # The header itself: werkzeug's request.user_agent builds a parser object per request.
    return request.headers.get("User-Agent", "")


class FlaskSessionHub:
    """The Flask extension: ``FlaskSessionHub(app)`` or ``FlaskSessionHub().init_app(app)``."""

    def __init__(self, app: flask.Flask | None = None) -> None:
        self._app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Install the session interface; reads ``app.config`` now, so configure first."""
        settings = flask_settings(app.config)
        hub = BlockingHub(settings)
        migrator = None
        if (
            app.config.get("SESSION_MIGRATE_FROM_FLASK_SESSION")
            and settings.session.type == "redis"
        ):
            migrator = FlaskSessionMigrator(app, settings)
        app.session_interface = HubSessionInterface(hub, migrator)
        app.extensions[EXTENSION_KEY] = app.session_interface

    def _interface(self, app: flask.Flask | None = None) -> HubSessionInterface:
        target = app or self._app or flask.current_app
        interface: HubSessionInterface = target.extensions[EXTENSION_KEY]
        return interface

    def hub(self, app: flask.Flask | None = None) -> BlockingHub:
        """The library hub behind ``app`` (default: the current app), for stats and health."""
        return self._interface(app).hub

    def close(self, app: flask.Flask | None = None) -> None:
        """Stop the hub's maintenance thread and close its Redis connections."""
        interface = self._interface(app)
        interface.hub.close()
        if interface.migrator is not None:
            interface.migrator.close()


def _session() -> FlaskSession:
    session = flask.session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, FlaskSession):
        raise RuntimeError("flask.session is not a SessionHub session: call FlaskSessionHub(app)")
    return session


def login_user(user_id: str, *, remember: bool = False, level: str | None = None) -> None:
    """Bind ``flask.session`` to ``user_id`` under a new token (the old one stops working);
    ``remember`` for "remember me", ``level`` for how the user authenticated (``AUTH.LEVELS``)."""
    _session().login(user_id, remember=remember, level=level)


def reauthenticate(level: str | None = None) -> None:
    """The user just proved who they are again: new token, same data, fresh for
    :func:`require_fresh`."""
    _session().reauthenticate(level)


P = ParamSpec("P")


def require_fresh(
    max_age: int, level: str | None = None
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """View decorator: 401 ``reauth_required`` (JSON) unless the user authenticated within
    ``max_age`` seconds, at ``level`` or stronger."""

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def fresh_only(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            interface: HubSessionInterface = flask.current_app.extensions[EXTENSION_KEY]
            try:
                interface.hub.require_fresh(_session().session, max_age, level)
            except ReauthRequiredError as exc:
                return flask.jsonify(exc.body()), 401
            return view(*args, **kwargs)

        return fresh_only

    return decorate


def logout_user() -> None:
    """Destroy ``flask.session`` and its cookie."""
    _session().logout()


def regenerate() -> None:
    """Move ``flask.session`` to a new token, keeping user and data."""
    _session().regenerate()


def current_user_id() -> str | None:
    """The user ``flask.session`` is bound to, or ``None``."""
    return _session().user_id
