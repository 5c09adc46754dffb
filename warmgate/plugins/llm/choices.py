"""Several choices (OpenAI's ``n``, and the legacy completions' prompt lists) for every backend:
the runner fans a request out into single-sequence generations through the backend and merges
their deltas, tagged with the index of their choice. A backend needs nothing for it; one that
sets ``concurrent_choices = False`` (one model in one process, where a process-wide seed would
make concurrent choices irreproducible) gets its choices one after another.

Each generation runs in a task of its own with a detached request context
(``RequestContext.detached``), so the per-choice accounting of ``LLMRunner._deltas`` stays
private and the runner writes the request's one account, summed over the choices, while each
choice's engine span joins the request's trace beside the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from warmgate.core.context import request_context
from warmgate.plugins.llm.backend import Delta, GenerationParams, Usage

__all__ = ["MAX_CHOICES", "choice_params", "concurrent", "gathered", "merged", "summed"]

MAX_CHOICES = 16
"""The most generations one request may ask for (``n``, times the prompts of a completions
request): each is a generation of its own on the engine."""

T = TypeVar("T")
_END = object()


def concurrent(backend: Any) -> bool:
    return bool(getattr(backend, "concurrent_choices", True))


def choice_params(params: GenerationParams, index: int) -> GenerationParams:
    """Choice ``index`` as a single-sequence generation; a seed moves by the index, so seeded
    choices are reproducible and still differ."""
    seed = None if params.seed is None else params.seed + index
    return msgspec.structs.replace(params, n=1, seed=seed)


def summed(usages: Sequence[Usage], per_prompt: int | None = None) -> Usage:
    """One request's usage, as OpenAI counts it: each prompt once (choices ``0, per_prompt, ...``
    start a new one; default: all share one), the choices' completions summed."""
    prompts = usages[::per_prompt or len(usages)]
    return Usage(sum(u.prompt_tokens for u in prompts), sum(u.completion_tokens for u in usages),
                 all(u.exact for u in usages))


async def _private(work: Awaitable[T]) -> T:
    context = request_context.get()  # this task's reports stay its own: the request accounts once, for all choices
    request_context.set(context.detached() if context is not None else None)
    return await work


async def gathered(answers: Sequence[Callable[[], Awaitable[T]]], parallel: bool) -> list[T]:
    """Each answer computed in a task of its own (all at once when ``parallel``); the first failure
    cancels the rest."""
    if not parallel:
        return [await asyncio.create_task(_private(answer())) for answer in answers]
    tasks = [asyncio.create_task(_private(answer())) for answer in answers]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def merged(streams: Sequence[AsyncGenerator[Delta]], parallel: bool) -> AsyncGenerator[tuple[int, Delta]]:
    """``(index, delta)`` from every stream as they come (one stream after another unless
    ``parallel``); the first failure is raised, and closing this closes every stream."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=4 * len(streams))
    turn = asyncio.Semaphore(len(streams) if parallel else 1)

    async def pump(index: int, stream: AsyncGenerator[Delta]) -> None:
        try:
            async with turn:
                async for delta in stream:
                    await queue.put((index, delta))
            await queue.put((index, _END))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put((index, exc))
        finally:
            await stream.aclose()

    tasks = [asyncio.create_task(_private(pump(i, stream))) for i, stream in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            index, item = await queue.get()
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
