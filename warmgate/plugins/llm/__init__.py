"""The LLM plugin: ``POST /llm`` (Livepeer), OpenAI chat completions and legacy text completions
at ``/v1`` and ``/llm``, ``GET /v1/models``, the Anthropic Messages API (``/v1/messages``) and the
Ollama API (``/api/*``), on pluggable backends (``register_llm_backends``)."""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Request, Response, get

from warmgate.core.functions.function import loading_function
from warmgate.core.functions.spec import DemoModel, PipelineSpec, PriceUnit, SpecBase, deferred
from warmgate.core.functions.threads import load_in_thread
from warmgate.core.hookspecs import hookimpl
from warmgate.core.http.errors import ConfigError
from warmgate.core.settings import Price
from warmgate.plugins.llm import completions_wire, embeddings
from warmgate.plugins.llm import openai_wire as oa
from warmgate.plugins.llm.anthropic_api import anthropic_specs
from warmgate.plugins.llm.backend import get_backends, relays_only
from warmgate.plugins.llm.completions import complete_text, quoted_tokens
from warmgate.plugins.llm.images import IMAGE_OPTIONS, ImageLimits
from warmgate.plugins.llm.ollama_api import ollama_routes, ollama_specs
from warmgate.plugins.llm.runner import LLMRunner
from warmgate.plugins.llm.wire import LLMRequest, LLMResponse

__all__ = ["DEFAULT_MODEL_ID", "load_llm"]

DEFAULT_MODEL_ID = "meta-llama/Meta-Llama-3.1-8B-Instruct"
PIPELINE = "llm"


async def load_llm(model_id: str, options: dict[str, Any]) -> LLMRunner:
    """Load ``model_id`` on the backend named by ``options["backend"]`` (default transformers)."""
    backends = get_backends()
    name = options.get("backend", "transformers")
    factory = backends.get(name)
    if factory is None:
        raise ConfigError(
            "llm function options", "backend", f"unknown LLM backend {name!r}; registered: {', '.join(sorted(backends))}"
        )
    engine_options = {k: v for k, v in options.items() if k not in ("backend", "served_model_id", *IMAGE_OPTIONS)}
    if inspect.iscoroutinefunction(factory):
        backend = await factory(model_id, engine_options)
    else:
        backend = await load_in_thread(factory, model_id, engine_options)
    runner = LLMRunner(options.get("served_model_id", model_id), backend, ImageLimits.from_options(options))
    runner.function = loading_function.get()  # Ollama's keep_alive sets its function's idle time
    return runner


_OPENAI = SpecBase(serves=PIPELINE, model_field="model", price_unit=PriceUnit.TOKEN, tags=("openai",), wire="openai")
"""The OpenAI routes: served by the llm functions, named by ``model``, priced per token."""


def _chat(runner: LLMRunner, request: oa.ChatCompletionRequest) -> Any:
    return runner.chat(request)


def _max_tokens(request: LLMRequest) -> int:
    return request.max_tokens


def _chat_max_tokens(request: oa.ChatCompletionRequest) -> int:
    return (request.max_completion_tokens or request.max_tokens or 256) * request.n  # each choice may use them all


@hookimpl
def register_pipelines(register: Any) -> None:
    register(
        PipelineSpec(
            name=PIPELINE,
            request=LLMRequest,
            response=LLMResponse,
            load=load_llm,
            engine_modules=("torch", "transformers.modeling_utils"),  # the in-process (transformers) backend
            relays=relays_only,
            default_model_id=DEFAULT_MODEL_ID,
            model_field="model",
            price_unit=PriceUnit.TOKEN,
            units=_max_tokens,
            summary="LLM",
            operation_id="genLLM",
            description="Generate text using a language model.",
            demos=(
                DemoModel(model_id="warmgate-demo/tiny-chat", price=Price(price_per_unit=166_666_667),
                          build=deferred("warmgate.plugins.llm.demo:build_tiny_chat_model")),
                # image_url content parts: a tiny LLaVA, loaded (and built) on its first request
                DemoModel(model_id="warmgate-demo/tiny-vision-chat", price=Price(price_per_unit=166_666_667),
                          build=deferred("warmgate.plugins.llm.demo:build_tiny_vision_model")),
            ),
        )
    )
    register(
        _OPENAI.spec(
            name="chat-completions",
            request=oa.ChatCompletionRequest,
            response=oa.ChatCompletion,
            decode=oa.decode_chat_request,
            invoke=_chat,
            units=_chat_max_tokens,
            paths=("/v1/chat/completions", "/llm/chat/completions"),
            summary="Chat Completions",
            operation_id="createChatCompletion",
            description="OpenAI-compatible chat completions on the LLM functions.",
        )
    )
    register(
        _OPENAI.spec(
            name="completions",
            request=completions_wire.CompletionRequest,
            response=completions_wire.TextCompletion,
            decode=completions_wire.decode_completion_request,
            invoke=complete_text,
            units=quoted_tokens,
            paths=("/v1/completions", "/llm/completions"),
            summary="Completions",
            operation_id="createCompletion",
            description="OpenAI-compatible legacy text completions (a raw prompt, no chat template) on the LLM "
                        "functions.",
        )
    )
    register(embeddings.embeddings_spec())
    for spec in (*anthropic_specs(PIPELINE), *ollama_specs(PIPELINE, embeddings.PIPELINE)):
        register(spec)


@hookimpl
def startup(app: Any) -> None:
    embeddings.track(app)  # which tokenizer prices each embeddings function's requests


@hookimpl
def shutdown(app: Any) -> None:
    embeddings.forget(app)


@hookimpl
def register_llm_backends(register: Any) -> None:
    from warmgate.plugins.llm.ollama_backend import load_ollama
    from warmgate.plugins.llm.transformers_backend import load_transformers
    from warmgate.plugins.llm.vllm_backend import load_vllm

    register("transformers", load_transformers)
    register("vllm", load_vllm)
    register("ollama", load_ollama)


@get(["/v1/models", "/llm/models"], sync_to_thread=False, tags=["openai"], summary="Models",
     operation_id="listModels", opt={"response": oa.ModelList})
def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The LLM and embeddings functions, in the OpenAI ``/v1/models`` shape (plus their state)."""
    served = (PIPELINE, embeddings.PIPELINE)
    functions = [f for f in request.app.state.functions.functions.values() if f.config.pipeline in served]
    cards = [
        oa.ModelCard(id=f.config.model_id, created=0, owned_by="warmgate", state=f.state.value,
                     pipeline=f.config.pipeline)
        for f in functions
    ]
    return Response(oa.ModelList(data=cards), media_type="application/json")


@hookimpl
def register_routes(register: Any) -> None:
    register(list_models)
    for route in ollama_routes(PIPELINE, embeddings.PIPELINE):
        register(route)
