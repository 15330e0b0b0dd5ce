"""Django: a session engine on the SessionHub store.

In ``settings.py``::

    SESSION_ENGINE = "sessionhub.integrations.django"
    SESSIONHUB = {"REDIS": {"URL": "redis://localhost:6379/0"}}   # or a sessionhub Settings

Django's own ``SECRET_KEY`` signs the tokens unless ``SESSIONHUB`` sets one. Django's session
middleware keeps owning the cookie (name, age, flags), so ``request.session``, ``cycle_key()``,
``flush()``, ``set_expiry()``, ``django.contrib.auth.login``/``logout`` and the ``a*`` async
methods all work as usual, with Django's semantics: each save sets the session's expiry in Redis
to ``get_expiry_age()`` (what its cookie gets too), and loading does not extend it. The async
methods run the same operations on ``redis.asyncio``. While Redis is down sessions live in
memory and go back to Redis when it returns.

A session logged in with ``django.contrib.auth`` is bound to the user id in the store as well.
``login()`` cycles the key first, so the save that follows binds that new session to the user
and keeps its key; a user id set on an older session without a new key still gets one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse

from ..config import Settings
from ..exceptions import ConfigError, InvalidInputError, InvalidTokenError, ReauthRequiredError
from ..frontends import RETRY_PATIENCE, arun_retried, run_retried
from ..hub import AsyncCalls, SessionHub, async_calls, close_async
from ..locks import DEFAULT_BLOCK, DEFAULT_TTL, AsyncSessionLock
from ..manager import SessionManager
from ..session import Session
from ..stores.base import Op
from ..stores.drivers import run_async
from ..stores.topology import AsyncClient, async_client
from .base import blank_session, merge_settings

__all__ = [
    "SessionStore",
    "close_hub",
    "current_user_id",
    "django_settings_for_hub",
    "get_hub",
    "login_user",
    "logout_user",
    "reauthenticate",
    "require_fresh",
]

_lock = threading.Lock()
_hub: SessionHub | None = None
T = TypeVar("T")
Change = Callable[[SessionManager, Session], Op[T]]
"""An atomic helper's operation on the library session."""
WATCHED_SETTINGS = frozenset({"SESSIONHUB", "SECRET_KEY", "SESSION_COOKIE_AGE"})


def django_settings_for_hub() -> Settings:
    """``settings.SESSIONHUB`` first, then Django's ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``
    and ``SESSION_COOKIE_AGE``."""
    base = getattr(django_settings, "SESSIONHUB", None)
    if base is not None and not isinstance(base, (Settings, Mapping)):
        raise ConfigError("SESSIONHUB must be a sessionhub Settings or a mapping of UPPERCASE keys")
    age = int(django_settings.SESSION_COOKIE_AGE)
    session = {"EXPIRES": age, "ABSOLUTE_LIFETIME": max(age, 604800)}
    fallbacks = [str(key) for key in getattr(django_settings, "SECRET_KEY_FALLBACKS", ()) or ()]
    return merge_settings(
        base,
        SECRET_KEY=django_settings.SECRET_KEY or None,
        SECRET_KEY_FALLBACKS=fallbacks,
        SESSION=session,
    )


def get_hub() -> SessionHub:
    """The process-wide blocking hub (made on first use; remade when its settings change)."""
    global _hub
    with _lock:
        if _hub is None:
            _hub = SessionHub(django_settings_for_hub())
        return _hub


def close_hub() -> None:
    """Close the process-wide hub; the next session operation makes a new one."""
    global _hub
    with _lock:
        hub, _hub = _hub, None
    if hub is not None:
        hub.close()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in WATCHED_SETTINGS:
        close_hub()


setting_changed.connect(_on_setting_changed, dispatch_uid="sessionhub-django-settings")


def _open(manager: SessionManager, cookie: str | None) -> Op[Session | None]:
    # Never slid on load: as with Django's own backends, a session's expiry is what its last
    # save set (get_expiry_age()), which is also the Max-Age its cookie got then.
    if not cookie:
        return None
    try:
        manager.storage_id_for_cookie(cookie)
    except InvalidTokenError:
        return None
    return (yield from manager.open(cookie, touch=False))


class _LoopClients:
    """One ``redis.asyncio`` client per event loop, closed when that loop shuts down.

    Django runs async views on a loop per request under WSGI and on one loop under ASGI. A
    client is bound to the loop it was made on, so each loop gets its own; a suspended async
    generator, which every loop closes in ``shutdown_asyncgens()`` (``asyncio.run`` and asgiref
    both call it), closes the client there, inside its own loop.
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[SessionHub, AsyncCalls, AsyncGenerator[None]]
        ] = weakref.WeakKeyDictionary()

    async def calls(self, hub: SessionHub) -> AsyncCalls | None:
        """What the current loop sends ``hub``'s calls through, on the hub's topology, as the
        asyncio hub would (``None`` for a memory-only hub)."""
        if hub.client is None:
            return None
        loop = asyncio.get_running_loop()
        held = self._by_loop.get(loop)
        if held is not None and held[0] is hub:
            return held[1]
        rs = hub.settings.redis
        client = async_client(rs)
        calls = async_calls(client, rs)
        closer = _close_at_shutdown(client, calls)
        await closer.__anext__()
        self._by_loop[loop] = (hub, calls, closer)
        return calls


async def _close_at_shutdown(client: AsyncClient, calls: AsyncCalls) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        await close_async(client, calls)


_loop_clients = _LoopClients()


@dataclass(frozen=True)
class AuthMark:
    """What :func:`login_user` or :func:`reauthenticate` asked of the next key and save."""

    fresh: bool = True
    """The user authenticated in this request (else a new key keeps the old login time)."""
    remember: bool | None = None
    """"Remember me" for the new key; ``None`` keeps the session's own."""
    level: str | None = None


class SessionStore(SessionBase):
    """Django ``SessionStore``; the session key is the (signed) SessionHub cookie value."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._hs: Session | None = None
        self.auth_mark: AuthMark | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def hub(self) -> SessionHub:
        """The hub all stores share."""
        return get_hub()

    def _run(self, op: Op[Any]) -> Any:
        return self.hub.run(op)

    async def _arun(self, op: Op[Any]) -> Any:
        # The same operations on redis.asyncio, over the blocking hub's manager: sync and async
        # views share one memory fallback and the hub's thread keeps it (probes, sweeps).
        hub = self.hub
        return await run_async(op, await _loop_clients.calls(hub))

    def _data(self, *, no_load: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = self._get_session(no_load=no_load)  # type: ignore[attr-defined]
        return dict(data)

    async def _adata(self, *, no_load: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = await self._aget_session(no_load=no_load)  # type: ignore[attr-defined]
        return dict(data)

    @property
    def storage_id(self) -> str | None:
        """The session's storage id (``hub.credentials_changed(user, keep=...)``), or ``None``."""
        self._data()
        return None if self._hs is None else self._hs.storage_id

    async def aload_once(self) -> None:
        """Load the session unless this request already did (:func:`require_fresh`)."""
        await self._adata()

    def _loaded(self, session: Session | None) -> dict[str, Any]:
        self._hs = session
        if session is None:
            self._session_key = None
            return {}
        if session.reissued_cookie is not None:
            # Opened with a former SECRET_KEY's cookie and moved to the current one: Django's
            # middleware sends the new key as the cookie when the session is modified.
            self._session_key = session.reissued_cookie
            self.modified = True
        return dict(session)

    def get_session_cookie_age(self) -> int:
        """``SESSION_COOKIE_AGE``, unless ``SESSIONHUB`` sets ``SESSION.EXPIRES``."""
        return self.hub.settings.session.expires

    def _lifetime_ms(self, data: dict[str, Any]) -> int:
        """What Django's cache backend gives the cache as a timeout: ``get_expiry_age()``."""
        return int(self.get_expiry_age(expiry=data.get(EXPIRY_KEY))) * 1000

    def _create_op(self, data: dict[str, Any]) -> Op[None]:
        user = data.get(USER_KEY)
        old, mark = self._hs, self.auth_mark or AuthMark(fresh=False)
        # A new key (cycle_key) for the same user keeps when and how they authenticated, and
        # "remember me", unless login_user or reauthenticate says they just did.
        same = old is not None and user is not None and old.user_id == str(user)
        kept = old.record if old is not None and same else blank_session().record
        session, cookie = yield from self.hub.manager.create(
            None if user is None else str(user),
            data=data,
            remember=kept.remember if mark.remember is None else mark.remember,
            auth_level=kept.auth_level if mark.level is None else mark.level,
            authenticated_ms=None if mark.fresh or not same else kept.authenticated_ms,
            lifetime_ms=self._lifetime_ms(data),
        )
        self._hs = session
        self._session_key = cookie

    def _save_op(self, data: dict[str, Any]) -> Op[None]:
        manager = self.hub.manager
        hs = self._hs
        if hs is None:
            hs = yield from _open(manager, self.session_key)
            if hs is None:
                raise UpdateError
        for key in [k for k in hs if k not in data]:
            del hs[key]
        for key, value in data.items():
            hs[key] = value  # only keys whose value changed are written
        lifetime = self._lifetime_ms(data)
        expires = manager.core.clock() + lifetime
        user = data.get(USER_KEY)
        if user is not None and str(user) != hs.user_id:
            if hs.new and hs.user_id is None:
                # contrib.auth's login has just cycled the key: this token is already new.
                level = (self.auth_mark.level if self.auth_mark else None) or ""
                bound = yield from manager.bind_user(
                    hs, str(user), auth_level=level, expires_ms=expires
                )
                if not bound:
                    raise UpdateError
                return
            new, cookie = yield from manager.login(str(user), previous=hs, lifetime_ms=lifetime)
            self._hs, self._session_key = new, cookie
            return
        if not (yield from manager.save(hs, expires_ms=expires)):
            raise UpdateError

    def _delete_op(self, session_key: str | None) -> Op[None]:
        # As Django's cache backend: the key is forgotten only by flush(), not by delete().
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        try:
            storage_id = self.hub.manager.storage_id_for_cookie(key)
        except InvalidTokenError:
            return
        yield from self.hub.manager.destroy(storage_id)
        if self._hs is not None and self._hs.storage_id == storage_id:
            self._hs = None

    # -- SessionBase -------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """The stored data for the session key; an unknown or forged key gives an empty one."""
        return self._loaded(self._run(_open(self.hub.manager, self.session_key)))

    async def aload(self) -> dict[str, Any]:
        """Async :meth:`load`."""
        return self._loaded(await self._arun(_open(self.hub.manager, self.session_key)))

    def exists(self, session_key: str) -> bool:
        """Whether a live session has this key."""
        return self._run(_open(self.hub.manager, session_key)) is not None

    async def aexists(self, session_key: str) -> bool:
        """Async :meth:`exists`."""
        return await self._arun(_open(self.hub.manager, session_key)) is not None

    def create(self) -> None:
        """Store the current data under a new key."""
        self._run(self._create_op(self._data(no_load=True)))
        self.modified = True

    async def acreate(self) -> None:
        """Async :meth:`create`."""
        await self._arun(self._create_op(await self._adata(no_load=True)))
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Write the keys that changed and the expiry (a new session is created with all)."""
        if self.session_key is None or must_create:
            self.create()
            return
        self._run(self._save_op(self._data()))

    async def asave(self, must_create: bool = False) -> None:
        """Async :meth:`save`."""
        if self.session_key is None or must_create:
            await self.acreate()
            return
        await self._arun(self._save_op(await self._adata()))

    def delete(self, session_key: str | None = None) -> None:
        """Destroy a session (default: this one)."""
        self._run(self._delete_op(session_key))

    async def adelete(self, session_key: str | None = None) -> None:
        """Async :meth:`delete`."""
        await self._arun(self._delete_op(session_key))

    # -- concurrent requests (see sessionhub.integrations.atomic) ------------------------------

    def increment(self, key: str, by: int | float = 1) -> int | float | None:
        """Add ``by`` to the number under ``key`` (0 when absent) in the store at once, so
        concurrent requests lose no increment; the new value, ``None`` if the session was
        destroyed meanwhile. A session not saved yet changes here, for its first save."""
        return self._change(self._data(), key, lambda m, hs: m.increment(hs, key, by))

    async def aincrement(self, key: str, by: int | float = 1) -> int | float | None:
        """Async :meth:`increment`."""
        data = await self._adata()
        return await self._achange(data, key, lambda m, hs: m.increment(hs, key, by))

    def append(self, key: str, value: object) -> list[object] | None:
        """Append ``value`` to the list under ``key`` in the store at once; the new list,
        ``None`` if the session was destroyed meanwhile."""
        return self._change(self._data(), key, lambda m, hs: m.append(hs, key, value))

    async def aappend(self, key: str, value: object) -> list[object] | None:
        """Async :meth:`append`."""
        data = await self._adata()
        return await self._achange(data, key, lambda m, hs: m.append(hs, key, value))

    @contextlib.contextmanager
    def lock(
        self, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> Iterator[SessionStore]:
        """Hold the session's lock for the block: waits up to ``block`` seconds for it
        (``LockTimeoutError`` after that), reads the data again from Redis, and saves before
        releasing it. Nothing to lock for a session not saved yet."""
        self._data()
        if self._hs is None:
            yield self
            return
        with self.hub.lock(self._hs, block=block, ttl=ttl) as current:
            self._relocked(current)
            yield self
            self.save()

    @contextlib.asynccontextmanager
    async def alock(
        self, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> AsyncIterator[SessionStore]:
        """Async :meth:`lock` (``async with request.session.alock():``)."""
        await self._adata()
        if self._hs is None:
            yield self
            return
        locked = AsyncSessionLock(self._arun, self.hub.manager, self._hs, block, ttl)
        async with locked as current:
            self._relocked(current)
            yield self
            await self.asave()

    def _change(self, data: dict[str, Any], key: str, make: Change[T]) -> T:
        hs = self._helped(data)
        value = run_retried(self._run, lambda: make(self.hub.manager, hs), RETRY_PATIENCE)
        return self._took(hs, key, value)

    async def _achange(self, data: dict[str, Any], key: str, make: Change[T]) -> T:
        hs = self._helped(data)
        value = await arun_retried(self._arun, lambda: make(self.hub.manager, hs), RETRY_PATIENCE)
        return self._took(hs, key, value)

    def _helped(self, data: dict[str, Any]) -> Session:
        """The library session a helper changes: the stored one, or (none yet) one holding
        this request's data."""
        return blank_session(data) if self._hs is None else self._hs

    def _took(self, hs: Session, key: str, value: T) -> T:
        """Put what a helper made into Django's copy of the data: as what the store holds, or,
        for a session not saved yet, as a change to save."""
        if value is not None:
            self._session_cache[key] = hs[key]
            self.modified = self.modified or hs is not self._hs
        return value

    def _relocked(self, current: Session | None) -> None:
        if current is not None:  # else destroyed meanwhile: the request keeps what it has
            self._hs = current
            self._session_cache = dict(current)

    @classmethod
    def clear_expired(cls) -> None:
        """Drop expired sessions from the memory fallback (Redis expires its own)."""
        get_hub().manager.core.sweep()

    @classmethod
    async def aclear_expired(cls) -> None:
        """Async :meth:`clear_expired` (a sweep of memory: no I/O)."""
        cls.clear_expired()


USER_KEY = "_auth_user_id"
"""Where ``django.contrib.auth`` keeps the user id; SessionHub binds the session to it."""
EXPIRY_KEY = "_session_expiry"
"""Where Django's ``set_expiry()`` keeps a session's own expiry."""


def _store(request: HttpRequest) -> SessionStore:
    store = request.session
    if not isinstance(store, SessionStore):
        raise RuntimeError("request.session is not SessionHub's: set SESSION_ENGINE")
    return store


def login_user(
    request: HttpRequest, user_id: str, *, remember: bool = False, level: str | None = None
) -> None:
    """Log ``user_id`` in: new session key, user bound to it, authenticated now at ``level``;
    ``remember`` gives it the "remember me" lifetimes and a cookie that outlives the browser.
    Also right after ``django.contrib.auth.login``, to record ``remember`` and ``level``."""
    store = _store(request)
    store.auth_mark = AuthMark(remember=remember, level=level)
    if remember:
        store.set_expiry(get_hub().settings.session.remember_absolute_lifetime)
    store.cycle_key()
    store[USER_KEY] = str(user_id)


def reauthenticate(request: HttpRequest, level: str | None = None) -> None:
    """The user proved who they are again: new key, same data, fresh for :func:`require_fresh`.

    A plain ``cycle_key()`` (and ``contrib.auth.login`` of the same user) keeps the earlier
    login time: it cannot tell a re-authentication from a key rotation.
    """
    store = _store(request)
    if current_user_id(request) is None:
        raise InvalidInputError("only a signed-in session can be re-authenticated")
    store.auth_mark = AuthMark(level=level)
    store.cycle_key()


def _fresh_problem(store: SessionStore, max_age: int, level: str | None) -> HttpResponse | None:
    # ``is None``, not ``or``: a stored session whose data is empty is still that session (as in
    # Django, where it exists() and loads as {}), and its login is what decides.
    session = blank_session() if store._hs is None else store._hs
    try:
        get_hub().require_fresh(session, max_age, level)
    except ReauthRequiredError as exc:
        return JsonResponse(exc.body(), status=401)
    return None


def require_fresh(max_age: int, level: str | None = None) -> Callable[[Any], Any]:
    """View decorator (sync or async views): 401 ``reauth_required`` (JSON) unless the user
    authenticated within ``max_age`` seconds, at ``level`` or stronger."""

    def decorate(view: Any) -> Any:
        if asyncio.iscoroutinefunction(view):

            @functools.wraps(view)
            async def fresh_only_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                store = _store(request)
                await store.aload_once()
                problem = _fresh_problem(store, max_age, level)
                return problem or await view(request, *args, **kwargs)

            return fresh_only_async

        @functools.wraps(view)
        def fresh_only(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            store = _store(request)
            store._data()  # loads the session once, as any read of request.session would
            return _fresh_problem(store, max_age, level) or view(request, *args, **kwargs)

        return fresh_only

    return decorate


def logout_user(request: HttpRequest) -> None:
    """Destroy the session and (via Django's middleware) its cookie."""
    request.session.flush()


def current_user_id(request: HttpRequest) -> str | None:
    """The logged-in user id (also the one ``django.contrib.auth.login`` stores), or ``None``."""
    value = request.session.get(USER_KEY)
    return None if value is None else str(value)
