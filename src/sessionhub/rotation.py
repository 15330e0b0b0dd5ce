"""``sessionhub keys rotate``: re-encrypt every stored value under the first ``ENCRYPTION.KEYS``
key, in batches, while the service runs.

Each batch is one ``SCAN`` of the key prefix on one master (on Redis Cluster, every master in
turn: a ``SCAN`` sees only its own node's keys); the master, its cursor, the masters finished and
the counts are kept in the hash ``P rotate``, so a rotation that stops (Ctrl-C, a lost
connection) resumes where it was. Every
rewrite is a compare-and-set on what was read (``rekey.lua`` for a session's fields, ``cas.lua``
for settings, ``restream.lua`` for an inbox): a value the service wrote meanwhile is already
under the first key, and is never replaced by an older one. Values under a key that is no
longer listed cannot be read, so they are counted and left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .inbox.message import BODY
from .preferences import CAS, FIELD
from .session import DATA_PREFIX, F_IP, F_USER_AGENT, Fields, joined, split
from .stores.base import CommandCall, LuaScript, Op, ScriptCall
from .stores.userkeys import unescape_user
from .valuecodec import ValueCodec, session_aad, user_aad

REKEY = LuaScript.load("rekey")
RESTREAM = LuaScript.load("restream")
ATTEMPTS = 5
"""Compare-and-set tries per key before it is counted as a conflict (run the rotation again)."""

_SESSION = re.compile(r"\{\d+\}:s:([0-9a-f]{32})")
_USER = re.compile(r"\{u:([^}]*)\}:(settings|inbox)")


COUNTS = ("scanned", "rewritten", "unreadable", "conflicts")
"""The counts a rotation keeps in its state hash, with the cursor, between batches."""


@dataclass
class Progress:
    """Where a rotation is: keys scanned (of about ``total``), values rewritten, left alone."""

    scanned: int = 0
    rewritten: int = 0
    unreadable: int = 0
    conflicts: int = 0
    total: int = 0
    done: bool = False


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class KeyRotation:
    """One batch at a time (:meth:`step`), each an I/O-free operation."""

    def __init__(
        self,
        values: ValueCodec,
        prefix: str,
        *,
        batch: int = 200,
        masters: Callable[[], Sequence[str]] = lambda: ("",),
    ) -> None:
        if not values.key_ids:
            raise ValueError("ENCRYPTION.KEYS is empty: there is no key to rotate to")
        self.values = values
        self.prefix = prefix
        self.batch = batch
        self.masters = masters
        """The masters to scan, asked anew each batch: :func:`~.stores.topology.masters`, every
        master of a cluster (a ``SCAN`` sees one node's keys only); ``""``, the one server,
        elsewhere. A master listed since the rotation began (after a failover) is scanned from
        its start."""
        self.state_key = f"{prefix}rotate"

    def step(self) -> Op[Progress]:
        """Rewrite the keys of the next ``SCAN`` batch; ``done`` once every master was scanned
        to its end."""
        state = dict(_pairs((yield CommandCall(("HGETALL", self.state_key)))))
        progress = Progress()
        for name in COUNTS:
            setattr(progress, name, int(state.get(name, 0)))
        # Asked after a round trip: an asyncio cluster client knows its nodes once connected.
        every = sorted(self.masters())
        for master in every:  # DBSIZE counts one node's keys: the total is every master's
            progress.total += int((yield CommandCall(("DBSIZE",), master)))
        finished = state.get("done", "").split()
        todo = [m for m in every if m not in finished]
        if todo:
            node, cursor = state.get("node", ""), state.get("cursor", "0")
            if node not in todo:
                node, cursor = todo[0], "0"
            match = _glob_escape(self.prefix) + "*"
            cursor, names = yield CommandCall(
                ("SCAN", cursor, "MATCH", match, "COUNT", self.batch), node
            )
            for name in names:
                yield from self._rotate(name[len(self.prefix) :], name, progress)
            progress.scanned += len(names)
            if str(cursor) == "0":
                finished.append(node)
                todo.remove(node)
                node = todo[0] if todo else ""
        progress.done = not todo
        if progress.done:
            yield CommandCall(("DEL", self.state_key))
        else:
            flat: list[str | int] = [
                "node",
                node,
                "cursor",
                str(cursor),
                "done",
                " ".join(finished),
            ]
            for name in COUNTS:
                flat += (name, getattr(progress, name))
            yield CommandCall(("HSET", self.state_key, *flat))
        return progress

    def _rotate(self, local: str, key: str, progress: Progress) -> Op[None]:
        found = _SESSION.fullmatch(local)
        user = None if found else _USER.fullmatch(local)
        if found is None and user is None:
            return
        for _ in range(ATTEMPTS):
            if found is not None:
                outcome = yield from self._session(key, found.group(1), progress)
            else:
                assert user is not None
                owner, kind = unescape_user(user.group(1)), user.group(2)
                if kind == "settings":
                    outcome = yield from self._settings(key, owner, progress)
                else:
                    outcome = yield from self._inbox(key, owner, progress)
            if outcome:
                return
        progress.conflicts += 1

    def _resealed(
        self, stored: str, aad: str, progress: Progress, *, compress: bool = True
    ) -> str | None:
        """``stored`` under the first key, or ``None`` when it already is or cannot be read."""
        if self.values.is_current(stored):
            return None
        text = self.values.open(stored, aad)
        if text is None:
            progress.unreadable += 1
            return None
        return self.values.seal(text, aad, compress=compress)

    def _session(self, key: str, storage_id: str, progress: Progress) -> Op[bool]:
        fields: Fields = dict(_pairs((yield CommandCall(("HGETALL", key)))))
        if not fields:
            return True
        expected: Fields = {}
        new: Fields = {}
        drop: list[str] = []
        agent = joined(F_USER_AGENT, fields)
        sealed = self._resealed(
            agent, session_aad(storage_id, F_USER_AGENT), progress, compress=False
        )
        if sealed is not None:
            old = split(F_USER_AGENT, agent)
            pieces = split(F_USER_AGENT, sealed)
            expected.update({name: fields[name] for name in old})
            new.update(pieces)
            drop += [name for name in old if name not in pieces]
        for name, stored in fields.items():
            if name == F_IP or name.startswith(DATA_PREFIX):
                compress = name != F_IP
                sealed = self._resealed(
                    stored, session_aad(storage_id, name), progress, compress=compress
                )
                if sealed is not None:
                    expected[name], new[name] = stored, sealed
        if not new:
            return True
        args: list[str | int] = [len(expected), *_flat(expected), len(new), *_flat(new), *drop]
        if not (yield ScriptCall(REKEY, (key,), tuple(args))):
            return False
        progress.rewritten += len(new)
        return True

    def _settings(self, key: str, user_id: str, progress: Progress) -> Op[bool]:
        stored = yield CommandCall(("GET", key))
        if not stored:
            return True
        sealed = self._resealed(stored, user_aad(user_id, FIELD), progress, compress=False)
        if sealed is None:
            return True
        if not (yield ScriptCall(CAS, (key,), (stored, sealed))):
            return False
        progress.rewritten += 1
        return True

    def _inbox(self, key: str, user_id: str, progress: Progress) -> Op[bool]:
        entries = yield CommandCall(("XRANGE", key, "-", "+"))
        if not entries:
            return True
        changes: list[str] = []
        aad = user_aad(user_id, BODY)
        for entry_id, raw in entries:
            body = dict(_pairs(raw)).get(BODY)
            sealed = None if body is None else self._resealed(body, aad, progress)
            if sealed is not None:
                changes += (entry_id, BODY, sealed)
        if not changes:
            return True
        args = (len(entries), entries[-1][0], *changes)
        if not (yield ScriptCall(RESTREAM, (key,), args)):
            return False
        progress.rewritten += len(changes) // 3
        return True


def _pairs(reply: Any) -> list[tuple[str, str]]:
    if isinstance(reply, dict):
        return list(reply.items())
    it = iter(reply or ())
    return list(zip(it, it, strict=False))


def _flat(fields: Fields) -> list[str]:
    return [v for pair in fields.items() for v in pair]
