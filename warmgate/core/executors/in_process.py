"""A runner of a routed function that is this gateway's own: the model loaded in this process
(``executor: local``) or deployed from it (``executor: ray``), next to the remote runners.

It starts cold and loads on the first request routed to it (so ``warm-first`` loads it only
when no warm runner can take a request), once, whatever arrives meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from warmgate.core.executors.base import Call, Executor
from warmgate.core.executors.local import describe_error

__all__ = ["InProcessRunner"]


class InProcessRunner:
    """The same face as a ``RemoteRunner`` to the router (``status``, ``warm``, ``error``), with
    ``call`` in place of ``forward``."""

    def __init__(self, executor: Executor, url: str) -> None:
        self.executor = executor
        self.url = url
        self.status = "IDLE"
        self.error: str | None = None
        self.warm = False
        self._runner: Any = None
        self._starting: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Nothing to reach: the model loads on the first request routed here."""

    async def call(self, call: Call) -> Any:
        if self._runner is None:
            if self._starting is None:
                self._starting = asyncio.get_running_loop().create_task(self._start(), name=f"start {self.url}")
            await asyncio.shield(self._starting)
        return await self.executor.call(self._runner, call)

    async def _start(self) -> None:
        self.status = "LOADING"
        try:
            self._runner = await self.executor.start()
        except Exception as exc:
            self.status, self.error = "ERROR", describe_error(exc)
            raise
        finally:
            self._starting = None
        self.status, self.error, self.warm = "OK", None, True

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.executor.stop(runner)
        await self.executor.shutdown()
        self.status, self.warm = "IDLE", False
