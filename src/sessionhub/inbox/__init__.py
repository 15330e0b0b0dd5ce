"""Per-user inboxes: messages kept while the user is offline, read state, live notification.

* :mod:`.ops`: sending, reading and marking (I/O-free operations), and the recovery flush;
* :mod:`.local`: what this process keeps for the degraded mode;
* :mod:`.notifier`: the Pub/Sub subscription that wakes live event streams;
* :mod:`.message` and :mod:`.ids`: the message and its id.
"""

from __future__ import annotations

from .ids import id_key, valid_id
from .message import Message
from .notifier import InboxNotifier
from .ops import MAX_PAGE, InboxOps

__all__ = ["MAX_PAGE", "InboxNotifier", "InboxOps", "Message", "id_key", "valid_id"]
