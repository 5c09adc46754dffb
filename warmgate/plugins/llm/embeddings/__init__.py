"""The ``embeddings`` pipeline: OpenAI ``POST /v1/embeddings`` (and ``/llm/embeddings``) on
in-process transformers, an OpenAI-compatible relay (vLLM) or Ollama, chosen by
``options.backend``. Priced per input token; ``prepare`` counts them before the quote."""

from __future__ import annotations

from typing import Any

from warmgate.core.functions.function import loading_function
from warmgate.core.functions.spec import DemoModel, PipelineSpec, PriceUnit, deferred
from warmgate.core.functions.threads import load_in_thread
from warmgate.core.http.errors import ConfigError
from warmgate.core.settings import Price
from warmgate.plugins.llm.backend import relays_only
from warmgate.plugins.llm.embeddings.functions import PIPELINE, forget, track
from warmgate.plugins.llm.embeddings.inputs import prepare_embeddings, prompt_tokens
from warmgate.plugins.llm.embeddings.wire import EmbeddingList, EmbeddingRequest

__all__ = ["BACKENDS", "PIPELINE", "embeddings_spec", "forget", "load_embeddings", "track"]

BACKENDS = {
    "transformers": deferred("warmgate.plugins.llm.embeddings.transformers_backend:load_transformers_embedder"),
    "vllm": deferred("warmgate.plugins.llm.embeddings.relay_backend:load_embeddings_relay"),
    "ollama": deferred("warmgate.plugins.llm.embeddings.ollama_backend:load_ollama_embedder"),
}
"""``options.backend`` -> ``load(model_id, options)``; the loaders' modules import on first use."""

_ASYNC = {"vllm", "ollama"}
_GATEWAY_OPTIONS = ("backend", "served_model_id", "tokenizer")


async def load_embeddings(model_id: str, options: dict[str, Any]) -> Any:
    """Load ``model_id`` on the backend named by ``options["backend"]`` (default transformers)."""
    from warmgate.plugins.llm.embeddings.runner import EmbeddingsRunner

    name = options.get("backend", "transformers")
    factory = BACKENDS.get(name)
    if factory is None:
        raise ConfigError("embeddings function options", "backend",
                          f"unknown embeddings backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    engine_options = {k: v for k, v in options.items() if k not in _GATEWAY_OPTIONS}
    if name in _ASYNC:
        backend = await factory(model_id, engine_options)
    else:
        backend = await load_in_thread(factory, model_id, engine_options)
    runner = EmbeddingsRunner(options.get("served_model_id", model_id), backend)
    runner.function = loading_function.get()  # Ollama's keep_alive sets its function's idle time
    return runner


def embeddings_spec() -> PipelineSpec:
    return PipelineSpec(
        name=PIPELINE,
        request=EmbeddingRequest,
        response=EmbeddingList,
        load=load_embeddings,
        engine_modules=("torch", "transformers.modeling_utils"),
        relays=relays_only,
        default_model_id="sentence-transformers/all-MiniLM-L6-v2",
        paths=("/v1/embeddings", "/llm/embeddings"),
        model_field="model",
        wire="openai",
        price_unit=PriceUnit.TOKEN,
        units=prompt_tokens,
        prepare=prepare_embeddings,
        summary="Embeddings",
        operation_id="createEmbedding",
        tags=("openai",),
        description="OpenAI-compatible embeddings: one vector per input, priced per input token.",
        demo=DemoModel(
            model_id="warmgate-demo/tiny-embed",
            build=deferred("warmgate.plugins.llm.embeddings.demo:build_tiny_embedding_model"),
            price=Price(price_per_unit=6_666_667),  # wei per input token, as in serverless.yaml
        ),
    )
