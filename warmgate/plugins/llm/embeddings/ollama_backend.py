"""Embeddings on an Ollama server (``/api/embed``) through the official ``ollama`` client. The
LLM Ollama backend does the connecting: host, model names, the pull on a cold start, and the
unload at scale to zero."""

from __future__ import annotations

import math
from typing import Any

import httpx

from warmgate.core.http.errors import ClientError, RequestValidationError
from warmgate.plugins.llm.embeddings.wire import EmbeddingJob
from warmgate.plugins.llm.ollama_backend import OllamaError, load_ollama

__all__ = ["OllamaEmbedder", "load_ollama_embedder"]


async def load_ollama_embedder(model_id: str, options: dict[str, Any]) -> OllamaEmbedder:
    return OllamaEmbedder(await load_ollama(model_id, options))


def _shorten(vector: list[float], size: int) -> list[float]:
    """The first ``size`` values at unit length: what Ollama's own ``dimensions`` does, done here
    so it works with every Ollama server and client version."""
    head = vector[:size]
    norm = math.sqrt(sum(value * value for value in head)) or 1.0
    return [value / norm for value in head]


class OllamaEmbedder:
    """Inputs longer than the context are refused (``truncate: false``), not cut silently."""

    def __init__(self, chat: Any) -> None:
        self.chat = chat  # the LLM backend: its client, model name, keep_alive and unload

    async def embed(self, job: EmbeddingJob) -> tuple[list[Any], int]:
        import ollama

        if job.texts is None:
            raise ClientError("input: the ollama embeddings backend takes text only; Ollama's /api/embed has no "
                              "token-id input")
        chat = self.chat
        try:
            answer = await chat.client.embed(model=chat.name, input=job.texts, truncate=False,
                                             keep_alive=chat.keep_alive,
                                             options={"num_ctx": chat.num_ctx} if chat.num_ctx else None)
        except ollama.ResponseError as exc:
            text = f"Ollama at {chat.host} refused embedding with {chat.name!r}: {exc.error}"
            raise (ClientError(text) if 400 <= exc.status_code < 500 else OllamaError(text)) from exc
        except (ConnectionError, httpx.TransportError) as exc:
            raise OllamaError(f"cannot reach Ollama at {chat.host} for model {chat.name!r} "
                              f"({type(exc).__name__}: {exc})") from exc
        size = job.request.dimensions
        vectors = [list(vector) for vector in answer.embeddings]
        if size is not None:
            if vectors and size > len(vectors[0]):
                raise RequestValidationError.single(["body", "dimensions"],
                                                    f"dimensions {size} exceeds the model's {len(vectors[0])}")
            vectors = [_shorten(vector, size) for vector in vectors]
        return vectors, answer.prompt_eval_count or 0

    async def close(self) -> None:
        await self.chat.close()
