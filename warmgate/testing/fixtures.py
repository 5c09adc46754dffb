"""pytest fixtures: ``pytest_plugins = ["warmgate.testing.fixtures"]`` in your conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from warmgate.core.app import create_app
from warmgate.core.plugins import pm
from warmgate.core.settings import Settings
from warmgate.testing.server import LiveServer, serve

__all__ = ["register_plugin", "warmgate_server"]


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Any, str], Any]]:
    """``register_plugin(obj, name)``: a throwaway plugin, unregistered when the test ends."""
    names: list[str] = []

    def register(plugin: Any, name: str) -> Any:
        pm.register(plugin, name=name)
        names.append(name)
        return plugin

    try:
        yield register
    finally:
        for name in names:
            pm.unregister(name=name)


@pytest.fixture
def warmgate_server() -> Iterator[Callable[..., tuple[LiveServer, httpx.Client]]]:
    """``warmgate_server(settings, pipelines=...)`` starts the app on a real port; returns the
    server and an ``httpx.Client`` bound to it. Both stop when the test ends."""
    with ExitStack() as stack:

        def start(settings: Settings | None = None, **kwargs: Any) -> tuple[LiveServer, httpx.Client]:
            app = create_app(settings or Settings(), **kwargs)
            server = stack.enter_context(serve(app))
            client = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
            return server, client

        yield start
