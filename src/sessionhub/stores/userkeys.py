"""Key names for per-user data (session index, settings, inbox) and the presence keys.

Every per-user key carries the hash tag ``{u:<escaped user id>}``, so all of one user's keys live
in one cluster slot. ``{`` and ``}`` in a user id would end the tag early, so they (and ``%``)
are percent-escaped inside it.

Presence is split into shards so that no single key takes every write: a user's shard is a
hash of the user id, and each shard's keys carry the tag ``{<shard>}`` (the slots of the session
shards). A user is always in the same shard, so the shards hold disjoint sets of users and global
figures are sums over the shards.

The login throttle's keys carry ``{ip:<address id>}`` instead, the address id being a keyed hash
of the client address (:meth:`~sessionhub.tokens.TokenCodec.address_id`): one script updates an
address's counter and its (username, address) counter together, so both must share a slot.
"""

from __future__ import annotations

import hashlib
import zlib


def escape_user(user_id: str) -> str:
    """The user id with ``%``, ``{`` and ``}`` percent-escaped (reversible, never a brace)."""
    return user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def unescape_user(escaped: str) -> str:
    """The user id :func:`escape_user` escaped."""
    return escaped.replace("%7B", "{").replace("%7D", "}").replace("%25", "%")


def username_digest(username: str) -> str:
    """A fixed-length stand-in for a typed username: key names stay bounded and hide it."""
    return hashlib.sha256(username.encode()).hexdigest()[:32]


class UserKeys:
    """``P{u:<user>}:<what>`` per user, ``P{<shard>}:presence:<what>`` for presence."""

    def __init__(self, prefix: str = "session:", shards: int = 16) -> None:
        self.prefix = prefix
        self.shards = shards
        """Presence shards (``SESSION.INDEX_SHARDS``)."""

    def _user(self, user_id: str, what: str) -> str:
        return f"{self.prefix}{{u:{escape_user(user_id)}}}:{what}"

    def sessions(self, user_id: str) -> str:
        """zset: storage_id -> absolute expiry in s (rounded up), of the user's live sessions."""
        return self._user(user_id, "sessions")

    def settings(self, user_id: str) -> str:
        """string: the user's settings as one JSON document."""
        return self._user(user_id, "settings")

    def inbox(self, user_id: str) -> str:
        """stream: the user's messages."""
        return self._user(user_id, "inbox")

    def inbox_read(self, user_id: str) -> str:
        """hash: ``upto``, the id up to which every message is read."""
        return self._user(user_id, "inbox:read")

    def inbox_read_ids(self, user_id: str) -> str:
        """set: ids read individually beyond ``upto``."""
        return self._user(user_id, "inbox:readids")

    def inbox_notify(self) -> str:
        """Pub/Sub channel: a user id is published each time a message reaches their inbox."""
        return f"{self.prefix}inbox:notify"

    def send_rate(self, user_id: str) -> str:
        """string counter: messages sent by the user in the current rate window."""
        return self._user(user_id, "sendrate")

    def presence_shard(self, user_id: str) -> int:
        """The presence shard of ``user_id``: stable across processes and restarts."""
        return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % self.shards

    def online(self, shard: int) -> str:
        """zset: user id -> last activity in ms, of the shard's users (one member per user)."""
        return f"{self.prefix}{{{shard}}}:presence:online"

    def online_of(self, user_id: str) -> str:
        return self.online(self.presence_shard(user_id))

    def daily(self, day: str, shard: int) -> str:
        """HyperLogLog of the shard's user ids active on ``day`` (YYYY-MM-DD, UTC)."""
        return f"{self.prefix}{{{shard}}}:presence:day:{day}"

    def login_ip(self, address_id: str) -> str:
        """hash ``n``, ``e``, ``l``: failed logins from the address in the window ending at ``e``.

        ``address_id`` is the keyed hash of the address, never the address itself.
        """
        return f"{self.prefix}{{ip:{address_id}}}:login"

    def login_pair(self, address_id: str, username: str) -> str:
        """hash ``n``, ``e``, ``l``: failed logins as ``username`` from the address."""
        return f"{self.login_ip(address_id)}:{username_digest(username)}"
