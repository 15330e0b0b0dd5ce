"""Whether a session mirrored in memory may still be served once Redis is away.

Every destroy in Redis publishes the storage id on the revocation channel (``destroy.lua``), and
each process holds one subscription that drops those ids from its mirror. A mirror copy is
therefore as good as the subscription that covered it since Redis last returned it:

* Each (re)established subscription starts a new **link epoch**; a copy records the epoch of the
  call that read it from Redis. While degraded, only copies of the current epoch are served.
* A link that drops while Redis still answers is re-established at once (its reconnect is the
  proof that Redis answers): the epoch moves on, and copies read before it are unconfirmed until
  Redis returns them again.
* A link that drops together with Redis (Redis does not answer a PING right after: the usual
  outage, a restart, a Redis still loading its data) keeps the epoch when it comes back, and so
  does one that comes back while the core is still degraded: nothing could be destroyed while
  Redis was unreachable. Only the moment between Redis answering again and the subscription
  being back (about ``RevocationFeed.retry_s``) is not covered.
* While the link is down, what Redis returns is vouched for by nothing: such copies are
  unconfirmed, whatever happens next.
* A revocation can overtake the reply of a load that read the session just before it was
  destroyed; the last revocations are remembered, so such a reply is not mirrored.

The same subscription makes the mirror a read cache while Redis is healthy: data writes publish
too (``update.lua``, ``modify.lua``), and a copy is served without a round trip only while the
**link** that was up when Redis returned it is still up (:attr:`MirrorCoherence.links`). Unlike
the epoch, the link number moves on every resubscription, whether or not Redis went down with
it: after a restart Redis may have lost what the cache holds, so everything is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

UNCONFIRMED: Final = -1
"""The epoch of a copy no subscription vouches for: never served from memory."""

RECENT_REVOCATIONS = 4096
"""Revocations remembered to catch those that overtake a load's reply (about 0.5 MB when full)."""


@dataclass(frozen=True)
class Stamp:
    """What the mirror knew when a call to Redis was sent."""

    epoch: int
    revocations: int
    link: int
    """The subscription that was up (:data:`UNCONFIRMED` when none was)."""


class MirrorCoherence:
    """The link epoch and the recent revocations of one process's mirror."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.epoch = 0
        """0 until the first subscription: nothing read before it is vouched for."""
        self.links = 0
        """Subscriptions established so far (tests and health wait on it)."""
        self._up = False
        self._dropped_with_redis = False
        self.revocations = 0
        self._recent: OrderedDict[str, int] = OrderedDict()  # storage_id -> revocation number
        self._forgotten = 0  # number of the newest revocation pushed out of _recent

    @property
    def up(self) -> bool:
        """Whether the subscription is established now."""
        return self._up

    def stamp(self) -> Stamp:
        """Taken before a call to Redis whose reply will be mirrored."""
        if not self._up:
            return Stamp(UNCONFIRMED, self.revocations, UNCONFIRMED)
        return Stamp(self.epoch, self.revocations, self.links)

    @property
    def link(self) -> int:
        """The subscription whose copies the cache may serve now (:data:`UNCONFIRMED`: none)."""
        return self.links if self._up else UNCONFIRMED

    def confirmation(self, stamp: Stamp, storage_id: str) -> int | None:
        """The epoch to record for ``storage_id`` read by a call stamped ``stamp``; ``None`` when it
        was revoked after the read, so the reply must not be mirrored."""
        with self._lock:
            if self.revocations == stamp.revocations:
                return stamp.epoch
            if self._recent.get(storage_id, 0) > stamp.revocations:
                return None
            if self._forgotten > stamp.revocations:
                return UNCONFIRMED  # too many revocations meanwhile to tell
            return stamp.epoch

    def revoked(self, storage_id: str) -> None:
        """``storage_id`` was destroyed or changed: a reply read before this must not be kept."""
        with self._lock:
            self.revocations += 1
            self._recent[storage_id] = self.revocations
            self._recent.move_to_end(storage_id)
            if len(self._recent) > RECENT_REVOCATIONS:
                _, self._forgotten = self._recent.popitem(last=False)

    def linked(self, *, degraded: bool) -> None:
        """The subscription is (re)established.

        While degraded the link came back with Redis: the epoch is kept, as nothing was
        destroyed while Redis was unreachable. Otherwise it dropped while Redis answered and
        revocations may have been missed: a new epoch.
        """
        with self._lock:
            self.links += 1
            self._up = True
            if not (degraded or self._dropped_with_redis) or self.epoch == 0:
                self.epoch += 1
            self._dropped_with_redis = False

    def unlinked(self, *, with_redis: bool = False) -> None:
        """The subscription failed: until the next one, replies are not vouched for.

        ``with_redis``: Redis itself stopped answering, so revocations cannot have been missed.
        """
        with self._lock:
            self._up = False
            self._dropped_with_redis = self._dropped_with_redis or with_redis

    def covers(self, confirmed: int) -> bool:
        """Whether a copy confirmed in epoch ``confirmed`` may be served from memory."""
        return confirmed == self.epoch and confirmed > 0
