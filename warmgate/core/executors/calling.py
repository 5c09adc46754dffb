"""Calling a runner however it is written: sync (a worker thread), async (the event loop), or a
generator of chunks (each step in a worker thread). Every executor that runs pipeline code, in
the gateway or in a Ray replica, goes through these."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from warmgate.core.functions.spec import Loader
from warmgate.core.functions.threads import load_in_thread

__all__ = ["as_chunks", "call_runner", "start_call", "chunks_of", "is_async_runner", "is_stream", "load_runner"]


async def load_runner(load: Loader, model_id: str, options: dict[str, Any]) -> Any:
    """``load(model_id, options)``: an ``async def`` on the loop, a plain one in a worker thread
    holding the load lock (``core.threads``); an awaitable it returns is awaited."""
    if inspect.iscoroutinefunction(load):
        return await load(model_id, options)
    runner = await load_in_thread(load, model_id, options)
    return await runner if inspect.isawaitable(runner) else runner


def is_async_runner(runner: Any) -> bool:
    """Whether calling ``runner`` returns a coroutine or an async generator (run it on the loop)."""
    call = runner if inspect.isfunction(runner) else getattr(runner, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def start_call(runner: Any, request: Any, invoke: Callable[[Any, Any], Any] | None = None, *,
               asynchronous: bool | None = None) -> Any:
    """``runner(request)``, or the spec's ``invoke(runner, request)``: async runners on the loop,
    sync ones in a worker thread (``asynchronous`` saves the check when the caller knows).
    Returns the result or an awaitable of it (no coroutine of its own: the hot path of every
    request); the result may be a stream (``is_stream``): pass it to ``chunks_of``."""
    if invoke is not None:
        return invoke(runner, request)
    if asynchronous if asynchronous is not None else is_async_runner(runner):
        return runner(request)
    return asyncio.to_thread(runner, request)


async def call_runner(runner: Any, request: Any, invoke: Callable[[Any, Any], Any] | None = None, *,
                      asynchronous: bool | None = None) -> Any:
    """``start_call`` awaited: the runner's result."""
    result = start_call(runner, request, invoke, asynchronous=asynchronous)
    return await result if inspect.isawaitable(result) else result


def is_stream(result: Any) -> bool:
    """A runner's result that is streamed: an async iterator or a (sync) generator."""
    return hasattr(result, "__aiter__") or inspect.isgenerator(result)


def chunks_of(result: Any) -> AsyncIterator[Any]:
    """A streamed result as an async iterator; a sync generator (a blocking model loop) is
    driven from worker threads, never the event loop."""
    return result if hasattr(result, "__aiter__") else _iterate_in_thread(result)


async def as_chunks(result: Any) -> AsyncIterator[Any]:
    """A result as chunks: a stream's own, or the whole result as one."""
    if not is_stream(result):
        yield result
        return
    async for chunk in chunks_of(result):
        yield chunk


async def _iterate_in_thread(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    done = object()
    try:
        while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
