"""The ray executor: the function is a Ray Serve application (``ray_serve``) that scales its
replicas from zero by itself; the gateway holds its deployment handle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from warmgate.core.executors.base import BaseExecutor, Call
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.tracing.settings import TracingSettings
from warmgate.core.tracing.setup import tracer_config

__all__ = ["RayExecutor"]


class RayExecutor(BaseExecutor):
    scales_itself = True  # Ray scales its replicas to zero itself

    _deployed = False

    async def start(self) -> Any:
        from warmgate.core.executors import ray_serve  # ray only for gateways with ray functions

        specs = ray_serve.function_specs(self.pipelines, self.config)
        runner = await asyncio.to_thread(ray_serve.deploy, specs, self.config, self.settings.section(RaySettings),
                                         tracer_config(self.settings.section(TracingSettings), self.settings.source))
        self._deployed = True
        return runner

    async def call(self, runner: Any, call: Call) -> Any:
        return await runner.call(call.spec.name, call.body)

    def stream(self, runner: Any, call: Call) -> AsyncIterator[Any]:
        return runner.stream(call.spec.name, call.body)

    async def shutdown(self) -> None:
        if self._deployed:
            from warmgate.core.executors import ray_serve

            await asyncio.to_thread(ray_serve.shutdown)
