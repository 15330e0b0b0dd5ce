"""What the routes count (logins, messages), whether or not metrics are on."""

from __future__ import annotations

from typing import Literal

LoginResult = Literal["ok", "invalid", "throttled"]


class Counts:
    """Counts nothing: the service without ``METRICS.ENABLED`` pays one empty call."""

    def login(self, result: LoginResult) -> None:
        """A login attempt ended with ``result``."""

    def sent(self, messages: int) -> None:
        """``messages`` were stored in inboxes."""

    def delivered(self) -> None:
        """A message went out on a live event stream."""
