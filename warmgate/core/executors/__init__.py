"""Executors: where a function's model runs (``local``, ``remote``, ``ray``, or one a plugin
registers with ``register_executors``). Nothing outside this package asks which one it is."""

from __future__ import annotations

from collections.abc import Mapping

from warmgate.core.executors.base import BaseExecutor, Call, Executor, ExecutorFactory, RawRequest, RunnersFailed
from warmgate.core.executors.local import LocalExecutor
from warmgate.core.executors.ray import RayExecutor
from warmgate.core.executors.remote import RemoteExecutor
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.plugins import load_plugins, pm
from warmgate.core.registry import collect_factories
from warmgate.core.settings import FunctionConfig, Settings

__all__ = ["BUILT_IN", "BaseExecutor", "Call", "Executor", "ExecutorFactory", "RawRequest", "RunnersFailed", "get_executors",
           "make_executor"]

BUILT_IN: dict[str, ExecutorFactory] = {"local": LocalExecutor, "remote": RemoteExecutor, "ray": RayExecutor}
"""The core's executors; their heavy clients (aiohttp, ray) are imported when one starts."""


def get_executors() -> dict[str, ExecutorFactory]:
    """Every executor by name: the built-ins, then those plugins register (``register_executors``);
    a name registered twice is an error naming both."""
    load_plugins()
    return collect_factories(pm.hook.register_executors, "executor", BUILT_IN)


def make_executor(config: FunctionConfig, pipelines: Mapping[str, PipelineSpec], settings: Settings,
                  executors: Mapping[str, ExecutorFactory] | None = None) -> Executor:
    """The executor of one function (its ``executor`` setting, checked by ``plan_functions``)."""
    factory = (executors if executors is not None else get_executors())[config.executor]
    return factory(config, pipelines, settings)


def check_config(config: FunctionConfig, executors: Mapping[str, ExecutorFactory]) -> tuple[str, str] | None:
    """What is wrong with a function's executor settings, as (field, message), or None."""
    factory = executors.get(config.executor)
    if factory is None:
        return "executor", f"unknown executor {config.executor!r}; installed: {', '.join(executors)}"
    check = getattr(factory, "check_config", None)
    return check(config) if check is not None else None
