"""pytest fixtures: ``pytest_plugins = ["warmgate.testing.fixtures"]`` in your conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from warmgate.core.app import create_app
from warmgate.core.demo import ensure_demo_model
from warmgate.core.plugins import pm
from warmgate.core.settings import Settings
from warmgate.core.spec import PipelineSpec
from warmgate.testing.server import LiveServer, serve

__all__ = ["register_plugin", "tiny_model_dir", "warmgate_server"]


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[PipelineSpec], Path]:
    """``tiny_model_dir(spec)``: the directory of ``spec.demo``'s tiny model, built once per
    test session (model builds are the slow part of a test run) and loaded by the real loader."""
    root = tmp_path_factory.mktemp("tiny-models")

    def build(spec: PipelineSpec) -> Path:
        if spec.demo is None:
            raise ValueError(f"pipeline {spec.name!r} declares no DemoModel to build")
        return ensure_demo_model(spec.demo, root)

    return build
