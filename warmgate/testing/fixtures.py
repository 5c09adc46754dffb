"""pytest fixtures: ``pytest_plugins = ["warmgate.testing.fixtures"]`` in your conftest.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from warmgate.core.functions.demo import ensure_demo_model
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.app import create_app
from warmgate.core.plugins import pm
from warmgate.core.settings import Settings
from warmgate.testing.server import LiveServer, serve

__all__ = ["register_plugin", "tiny_model_dir", "warmgate_server"]


CACHE_VARIABLE = "WARMGATE_CACHE_DIR"
_cache_key = pytest.StashKey[tuple[str, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    """The test session gets a cache directory of its own, set before any test reads settings:
    ledgers, key stores and demo models (built once per session) go there, in-process apps
    (``Settings().gateway.cache_path`` reads the variable) and spawned ``warmgate serve``
    processes alike, never into the user's ``~/.cache/warmgate``. Removed when the session ends."""
    cache = tempfile.mkdtemp(prefix="warmgate-test-cache-")
    config.stash[_cache_key] = (cache, os.environ.get(CACHE_VARIABLE))
    os.environ[CACHE_VARIABLE] = cache


def pytest_unconfigure(config: pytest.Config) -> None:
    cache, before = config.stash.get(_cache_key, (None, None))
    if cache is None:
        return
    if before is None:
        os.environ.pop(CACHE_VARIABLE, None)
    else:
        os.environ[CACHE_VARIABLE] = before
    shutil.rmtree(cache, ignore_errors=True)


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
