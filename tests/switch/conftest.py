"""Fixtures of the switch layer's tests (tests/switch/hub_world.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.switch.hub_world import Switch, hub_switch


@pytest.fixture(scope="module")
def hub(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    yield from hub_switch(tmp_path_factory)
