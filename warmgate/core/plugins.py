"""The plugin manager: built-in plugins, entry points, the allow-list, and the pipeline registry."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Iterable
from typing import Any

import pluggy
import structlog

from warmgate.core import hookspecs
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.registry import Registry, collect

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "await_me_maybe",
    "get_pipelines",
    "get_routes",
    "list_plugins",
    "load_plugins",
    "pm",
]

ENTRY_POINT_GROUP = "warmgate"

DEFAULT_PLUGINS: tuple[str, ...] = ("warmgate.plugins.pricing", "warmgate.plugins.llm", "warmgate.plugins.diffusion",
                                     "warmgate.plugins.vision", "warmgate.plugins.audio", "warmgate.plugins.live",
                                     "warmgate.plugins.console")
"""Built-in plugin modules, registered through the same hooks as third-party ones."""

pm = pluggy.PluginManager("warmgate")
pm.add_hookspecs(hookspecs)

_loaded = False
_log = structlog.get_logger("warmgate.plugins")


def _allow_list() -> set[str] | None:
    raw = os.environ.get("WARMGATE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _allowed(names: Iterable[str], allow: set[str] | None) -> bool:
    return allow is None or any(name in allow for name in names)


def load_plugins() -> None:
    """Register entry-point plugins and the built-ins, once.

    ``WARMGATE_LOAD_PLUGINS=a,b`` loads only the plugins whose entry-point name, distribution
    name or built-in module name is listed (an empty value loads none). Under pytest
    (``sys._called_from_test``) entry points are skipped so installed packages cannot change
    test results; tests register plugins explicitly.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    allow = _allow_list()
    if not getattr(sys, "_called_from_test", False):
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ""
            if not _allowed((ep.name, dist), allow) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not stop the gateway
                _log.error("plugin_load_failed", plugin=ep.name, error=f"{type(exc).__name__}: {exc}")
    for module_name in DEFAULT_PLUGINS:
        short = module_name.rsplit(".", 1)[-1]
        if _allowed((module_name, short), allow) and pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)
    if os.environ.get("WARMGATE_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)


def _trace_before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    _log.info("hook_call", hook=hook_name, plugins=[i.plugin_name for i in hook_impls], kwargs=list(kwargs))


def _trace_after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    _log.info("hook_result", hook=hook_name, result=repr(outcome.get_result())[:200])


async def await_me_maybe(value: Any) -> Any:
    """Call ``value`` if it is callable, await it if it is awaitable, else return it."""
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


def list_plugins() -> list[dict[str, Any]]:
    """Name, version and hooks of every registered plugin (for ``warmgate plugins``)."""
    load_plugins()
    dists = {ep.name: ep.dist for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    out = []
    for name, plugin in sorted(pm.list_name_plugin()):
        if name is None or plugin is None:
            continue
        dist = dists.get(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        entry: dict[str, Any] = {"name": name, "hooks": hooks}
        if dist is not None:
            entry["package"] = dist.name
            entry["version"] = dist.version
        out.append(entry)
    return out


def get_pipelines() -> dict[str, PipelineSpec]:
    """Collect every plugin's pipelines, keyed by name, rejecting duplicates and wrong types."""
    load_plugins()
    specs: Registry[PipelineSpec] = Registry("pipeline")
    paths: dict[str, str] = {}

    def register(plugin: str, spec: PipelineSpec) -> None:
        if not isinstance(spec, PipelineSpec):
            raise TypeError(f"plugin {plugin!r} registered {spec!r}, which is not a warmgate.PipelineSpec")
        specs.add(plugin, spec.name, dataclasses.replace(spec, plugin=plugin))
        for path in spec.paths:
            if path in paths:
                raise ValueError(f"path {path} is claimed by both {paths[path]!r} and {plugin!r}")
        for path in spec.paths:
            paths[path] = plugin
        if spec.serves and spec.serves == spec.name:
            raise ValueError(f"pipeline {spec.name!r} cannot serve itself")

    collect(pm.hook.register_pipelines, register)  # in registration order
    for spec in specs.items.values():
        host = specs.items.get(spec.serves) if spec.serves else spec
        if host is None or host.serves:
            raise ValueError(f"pipeline {spec.name!r} (plugin {spec.plugin!r}) serves {spec.serves!r}, "
                             "which is not a registered pipeline with functions of its own")
    return specs.items


def get_routes() -> list[Any]:
    """Extra route handlers from ``register_routes`` hooks, type-checked."""
    from litestar.handlers import BaseRouteHandler
    from litestar.router import Router

    load_plugins()
    routes: list[Any] = []

    def register(plugin: str, handler: Any) -> None:
        if not isinstance(handler, (BaseRouteHandler, Router)):
            raise TypeError(f"plugin {plugin!r} registered {handler!r}, which is not a Litestar route handler")
        routes.append(handler)

    collect(pm.hook.register_routes, register)
    return routes
