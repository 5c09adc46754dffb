"""The local executor: the pipeline's own loader builds the model in this process, and each
request runs on the event loop (async runners) or in a worker thread (sync ones)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import structlog

from warmgate.core.executors.base import BaseExecutor, Call
from warmgate.core.executors.calling import is_async_runner, load_runner, start_call
from warmgate.core.functions.cancel import cancellation_scope
from warmgate.core.functions.demo import ensure_demo_model
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.functions.threads import load_in_thread
from warmgate.core.http.errors import ClientDisconnected, InferenceError, WarmgateError
from warmgate.core.settings import FunctionConfig, Settings

__all__ = ["LocalExecutor", "describe_error"]

_log = structlog.get_logger("warmgate.functions")


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, WarmgateError):
        return exc.msg
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class LocalExecutor(BaseExecutor):
    """The model in the gateway's own process, loaded on a worker thread."""

    in_process = True

    def __init__(self, config: FunctionConfig, pipelines: Mapping[str, PipelineSpec], settings: Settings) -> None:
        super().__init__(config, pipelines, settings)
        self.spec = pipelines[config.pipeline]
        self._demo_root = settings.gateway.cache_path / "demo"
        self._asynchronous = False

    async def start(self) -> Any:
        spec, config = self.spec, self.config
        model_id, options = config.model_id, dict(config.options)
        demo = spec.demo_model(config.model_id) if config.demo else None
        if demo is not None:
            path = await load_in_thread(ensure_demo_model, demo, self._demo_root)
            model_id, options["served_model_id"] = str(path), config.model_id
        assert spec.load is not None  # specs without a loader serve another pipeline's functions
        runner = await load_runner(spec.load, model_id, options)
        if runner is None or not callable(runner):
            raise TypeError(f"the {spec.name} loader returned {runner!r}, not a callable runner")
        self._asynchronous = is_async_runner(runner)
        return runner

    def call(self, runner: Any, call: Call) -> Awaitable[Any]:  # type: ignore[override]
        """An awaitable, not a coroutine of its own: one frame fewer on every request."""
        if call.disconnected is None:
            return self._run(runner, call)
        return run_while_connected(self.config.name, self._run(runner, call), call.disconnected)

    async def _run(self, runner: Any, call: Call) -> Any:
        try:
            result = start_call(runner, call.body, call.spec.invoke, asynchronous=self._asynchronous)
            return await result if inspect.isawaitable(result) else result
        except WarmgateError:
            raise
        except Exception as exc:
            _log.exception("inference_failed", function=self.config.name)
            raise InferenceError(f"{self.spec.name} inference failed: {describe_error(exc)}") from exc


async def run_while_connected(name: str, work: Coroutine[Any, Any, Any],
                              disconnected: Callable[[], Awaitable[None]]) -> Any:
    """Run the request, and if the client disconnects meanwhile, set the request's cancellation
    flag (``warmgate.core.functions.cancel``), which runners check between steps, and wait for the runner
    to stop: the slot is freed only once the work has ended, and the answer is a 499."""
    with cancellation_scope() as cancellation:  # the task and its worker threads copy the context
        run = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((run, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler was cancelled (shutdown): stop the work too
        cancellation.cancel()
        run.cancel()
        raise
    finally:
        gone.cancel()
    if run.done():
        return run.result()
    cancellation.cancel()
    with contextlib.suppress(Exception):  # the runner's own end (RequestCancelled, a result) is not sent
        await run
    raise ClientDisconnected(f"client disconnected while {name!r} ran; the work stopped")
