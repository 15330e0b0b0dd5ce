"""Fixtures of the store tests: hubs of both kinds on the test Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers import Blocking, LoopThread, MakeHub, build_settings
from sessionhub.config import Settings
from sessionhub.hub import AsyncSessionHub, SessionHub


@pytest.fixture(params=["sync", "async"])
def make_hub(request: pytest.FixtureRequest, redis_url: str) -> Iterator[MakeHub]:
    """Factory of hubs on the test Redis; the async one is driven from a loop thread."""

    made: list[Any] = []
    loop = LoopThread()

    def make(**sections: dict[str, object]) -> Any:
        settings: Settings = build_settings(redis_url, **sections)
        if request.param == "sync":
            hub: Any = SessionHub(settings)
        else:
            hub = Blocking(AsyncSessionHub(settings), loop)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        if isinstance(hub, SessionHub):
            hub.close()
        else:
            hub.aclose()
    loop.close()
