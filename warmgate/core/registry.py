"""The one way a ``register_<things>(register)`` hook is collected: each implementation is called
in registration order with a ``register`` callback that knows which plugin it serves, and a
name registered twice is an error naming both plugins."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "collect", "collect_factories"]

T = TypeVar("T")


def collect(hook: Any, register: Callable[..., None]) -> None:
    """Call every implementation of ``hook`` with ``register`` bound to the implementing
    plugin's name: a plugin's ``register(x, ...)`` calls ``register(plugin_name, x, ...)``."""
    for impl in hook.get_hookimpls():
        bound = functools.partial(register, impl.plugin_name)
        impl.function(**{arg: bound for arg in impl.argnames if arg == "register"})


def collect_factories(hook: Any, kind: str, built_in: dict[str, Any] | None = None) -> dict[str, Any]:
    """``register(name, factory)`` hooks (executors, LLM backends): callables by name, after the
    core's own ``built_in`` ones."""
    registry: Registry[Any] = Registry(kind)
    for name, factory in (built_in or {}).items():
        registry.add("warmgate", name, factory)

    def register(plugin: str, name: str, factory: Any) -> None:
        if not callable(factory):
            raise TypeError(f"plugin {plugin!r} registered {kind} {name!r} with {factory!r}, not a callable")
        registry.add(plugin, name, factory)

    collect(hook, register)
    return registry.items


class Registry(Generic[T]):
    """Things of one ``kind`` (``"pipeline"``, ``"LLM backend"``) by name, with their plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}
        self.owners: dict[str, str] = {}

    def add(self, plugin: str, name: str, item: T) -> None:
        if name in self.items:
            raise ValueError(f"{self.kind} {name!r} is registered by both {self.owners[name]!r} and {plugin!r}")
        self.items[name], self.owners[name] = item, plugin
