"""Login throttling: a fixed window of failed logins per (username, client address) and per address.

Redis keys, both in the address's slot ``{ip:<a>}`` so one script updates them together
(see :class:`~sessionhub.stores.userkeys.UserKeys`): ``P{ip:<a>}:login`` and
``P{ip:<a>}:login:<digest of the username>``, hashes of ``n`` (attempts counted), ``e`` (window
end, ms) and ``l`` (this lockout was logged), expiring with the window. ``<a>`` is the address's
keyed hash (``SECRET_KEY``-derived, as storage ids are), so neither Redis nor this process's
table holds an address in clear; a new ``SECRET_KEY`` starts every window afresh.

:meth:`LoginThrottle.attempt` runs *before* the password check: it refuses with
:class:`TooManyAttemptsError` while either counter is at its limit (so a locked-out guesser costs no
hash and learns nothing), and otherwise counts the attempt at once, so that concurrent guesses
cannot overrun the limit. :meth:`LoginThrottle.succeeded` takes a successful attempt back: the
(username, address) counter is cleared and the address's is decremented, so only failures add
up. A window starts with its first attempt and is never extended, so nobody is locked out for
longer than ``AUTH.LOCKOUT_SECONDS`` after it; and as the counters are per address, a guesser
elsewhere never locks a user out of their own address at all.

Degraded mode: while Redis is down the same windows are kept in a bounded table in this process
(per instance, started afresh; not copied to Redis on recovery, where counting restarts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .exceptions import TooManyAttemptsError
from .stores.base import LuaScript, Op, ScriptCall, send
from .stores.resilient import USE_MEMORY, ResilientCore
from .stores.userkeys import UserKeys, username_digest

log = logging.getLogger("sessionhub.auth")

THROTTLE = LuaScript.load("login_throttle")
LOCAL_TABLE_MAX = 100_000
"""Windows kept in memory while degraded; beyond it ended windows, then the oldest, are dropped."""

_SCOPES = ("address", "username from this address")


@dataclass
class _Window:
    count: int = 0
    end_ms: int = 0
    logged: bool = False


class LoginThrottle:
    """Counts login attempts per (username, address) and per address (I/O-free operations)."""

    def __init__(
        self,
        core: ResilientCore,
        keys: UserKeys,
        address_id: Callable[[str], str],
        *,
        max_attempts: int = 5,
        lockout_s: int = 300,
        max_attempts_per_ip: int = 50,
        local_max: int = LOCAL_TABLE_MAX,
    ) -> None:
        self.core = core
        self.keys = keys
        self.address_id = address_id
        """The keyed hash a client address is counted under (``TokenCodec.address_id``)."""
        self.max_attempts = max_attempts
        self.window_ms = lockout_s * 1000
        self.max_attempts_per_ip = max_attempts_per_ip
        self.local_max = local_max
        self._lock = threading.Lock()
        self._local: dict[str, _Window] = {}

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 0 or self.max_attempts_per_ip > 0

    def attempt(self, username: str, ip: str) -> Op[None]:
        """Count a login attempt; :class:`TooManyAttemptsError` (counting nothing) while locked."""
        if not self.enabled:
            return
        retry_ms, *states = yield from self._run("try", username, ip)
        limits = (self.max_attempts_per_ip, self.max_attempts)
        for scope, state, limit in zip(_SCOPES, states, limits, strict=True):
            if state == 2:
                log.warning(
                    "login locked out: %d failed logins for this %s (user %s, address %s) "
                    "within %d s",
                    limit,
                    scope,
                    username_digest(username)[:8],
                    ip or "-",
                    self.window_ms // 1000,
                )
        if retry_ms > 0:
            pair = states[1] > 0  # the narrower lockout tells the user more
            raise TooManyAttemptsError(
                -(-retry_ms // 1000),  # rounded up: a client that waits that long gets through
                _SCOPES[pair],
                limits[pair],
                self.window_ms // 1000,
            )

    def succeeded(self, username: str, ip: str) -> Op[None]:
        """The attempt counted by :meth:`attempt` had the right password: take it back."""
        if self.enabled:
            yield from self._run("ok", username, ip)

    def _run(self, op: str, username: str, ip: str) -> Op[list[int]]:
        address = self.address_id(ip)
        keys = (self.keys.login_ip(address), self.keys.login_pair(address, username))
        limits = (self.max_attempts_per_ip, self.max_attempts)  # in the order of the keys
        now = self.core.clock()
        reply = yield from self.core.on_redis(
            send(ScriptCall(THROTTLE, keys, (now, self.window_ms, *limits, op)))
        )
        if reply is USE_MEMORY:
            return self._run_local(op, keys, limits, now)
        return [int(x) for x in reply]

    def _run_local(
        self, op: str, keys: tuple[str, str], limits: tuple[int, int], now: int
    ) -> list[int]:
        """``login_throttle.lua`` on the in-memory table (same replies)."""
        with self._lock:
            windows = [self._live(key, now) for key in keys]
            if op == "ok":
                self._local.pop(keys[1], None)
                if limits[0] > 0 and windows[0].count > 0:
                    windows[0].count -= 1
                return [0, 0, 0]
            out = [0, 0, 0]
            for i, (window, limit) in enumerate(zip(windows, limits, strict=True)):
                if limit > 0 and window.count >= limit:
                    out[0] = max(out[0], window.end_ms - now)
                    out[1 + i] = 1 if window.logged else 2
                    window.logged = True
            if out[0] > 0:
                return out
            for key, window, limit in zip(keys, windows, limits, strict=True):
                if limit <= 0:
                    continue
                if window.count == 0:
                    window = _Window(0, now + self.window_ms)
                    self._store(key, window, now)
                window.count += 1
            return out

    def _live(self, key: str, now: int) -> _Window:
        window = self._local.get(key)
        return window if window is not None and window.end_ms > now else _Window()

    def _store(self, key: str, window: _Window, now: int) -> None:
        self._local.pop(key, None)  # re-inserted last: the table's order is oldest first
        if len(self._local) >= self.local_max:
            self._local = {k: w for k, w in self._local.items() if w.end_ms > now}
        while len(self._local) >= self.local_max:
            del self._local[next(iter(self._local))]
        self._local[key] = window
