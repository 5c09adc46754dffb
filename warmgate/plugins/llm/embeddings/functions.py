"""Which tokenizer counts and checks each embeddings function's requests before it is acquired.

A spec's ``prepare(request, options)`` gets the function's options but not the function, so the
``startup`` hook records each embeddings function under its options dict (one dict per configured
function, alive as long as the gateway), and ``shutdown`` forgets them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from warmgate.core.functions.demo import ensure_demo_model
from warmgate.core.http.errors import ConfigError, LoadError
from warmgate.plugins.llm.embeddings.encoder import TokenCounter, counter, describe

__all__ = ["PIPELINE", "encoder_for", "forget", "track"]

PIPELINE = "embeddings"

_encoders: dict[int, tuple[str, Callable[[], TokenCounter]]] = {}


def _source(fn: Any, demo_root: Any) -> Callable[[], TokenCounter] | None:
    """In-process models check inputs with their own tokenizer and config; relayed ones count
    with ``options.tokenizer`` when it is set."""
    options, config = fn.config.options, fn.config
    if options.get("backend", "transformers") == "transformers" and not fn.executor.forwards_raw:
        demo = fn.spec.demo_model(config.model_id) if config.demo else None
        if demo is not None:
            return lambda: describe(str(ensure_demo_model(demo, demo_root)))
        return functools.partial(describe, config.model_id)
    if options.get("tokenizer"):
        return functools.partial(counter, str(options["tokenizer"]))
    return None


def track(app: Any) -> None:
    """Record the app's embeddings functions; a priced one needs a way to count input tokens."""
    manager = app.state.functions
    demo_root = manager.settings.gateway.cache_path / "demo"
    for fn in manager.functions.values():
        if fn.config.pipeline != PIPELINE:
            continue
        source = _source(fn, demo_root)
        if source is None and fn.config.price is not None:
            raise ConfigError(manager.settings.source, f"function {fn.name!r}: options.tokenizer",
                              "a priced embeddings function on a relayed backend bills input tokens, which it "
                              "counts with options.tokenizer (a tokenizer directory or hub id); set it")
        if source is not None:
            _encoders[id(fn.config.options)] = (fn.name, source)


def forget(app: Any) -> None:
    for fn in app.state.functions.functions.values():
        _encoders.pop(id(fn.config.options), None)


def encoder_for(options: dict[str, Any]) -> TokenCounter | None:
    """The tokenizer of the function configured with ``options``, loaded on first use."""
    entry = _encoders.get(id(options))
    if entry is None:
        return None
    name, source = entry
    try:
        return source()
    except Exception as exc:  # a missing or broken model: the same 503 its load would give
        raise LoadError(f"{name}: cannot load its tokenizer: {type(exc).__name__}: {exc}") from exc
