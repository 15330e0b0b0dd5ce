"""Fixtures of the store tests: hubs of both kinds on the test Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import MakeHub, build_settings, hub_factory
from sessionhub.config import Settings


@pytest.fixture(params=["sync", "async"])
def make_hub(request: pytest.FixtureRequest, redis_url: str) -> Iterator[MakeHub]:
    """Factory of hubs on the test Redis; the async one is driven from a loop thread."""

    def settings(**sections: object) -> Settings:
        return build_settings(redis_url, **sections)

    with hub_factory(request.param, settings) as make:
        yield make
