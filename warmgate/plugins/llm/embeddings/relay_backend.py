"""Embeddings relayed to an OpenAI-compatible server's ``/v1/embeddings`` (vLLM with a pooling
model, or any engine speaking the API). Connecting, the managed engine and error mapping are the
LLM vllm backend's: ``options.url`` relays to a running server, without it a cold start launches
vLLM (pass ``options.engine: {runner: pooling}`` or the flags your vLLM version wants)."""

from __future__ import annotations

from typing import Any

import msgspec

from warmgate.plugins.llm.embeddings.wire import Embedding, EmbeddingJob
from warmgate.plugins.llm.vllm_backend import _upstream_error, load_vllm

__all__ = ["EmbeddingsRelay", "load_embeddings_relay"]

_JSON_HEADERS = {"Content-Type": "application/json"}


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0


class _Answer(msgspec.Struct):
    data: list[Embedding]
    usage: _Usage = msgspec.field(default_factory=_Usage)


async def load_embeddings_relay(model_id: str, options: dict[str, Any]) -> EmbeddingsRelay:
    return EmbeddingsRelay(await load_vllm(model_id, options))


class EmbeddingsRelay:
    """Sends the request as the client wrote it (``dimensions`` and ``encoding_format`` are the
    engine's to honour or refuse), with the engine's model name, and hands back its vectors."""

    def __init__(self, chat: Any) -> None:
        self.chat = chat  # the LLM relay: its session, served name and managed engine
        self.url = chat.url.removesuffix("/v1/chat/completions") + "/v1/embeddings"
        self._answer = msgspec.json.Decoder(_Answer)
        self._encode = msgspec.json.Encoder().encode

    async def embed(self, job: EmbeddingJob) -> tuple[list[Any], int]:
        request = job.request
        body: dict[str, Any] = {"model": self.chat.served, "encoding_format": request.encoding_format,
                                "input": job.texts if job.texts is not None else job.token_ids}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        async with self.chat.session.post(self.url, data=self._encode(body), headers=_JSON_HEADERS) as response:
            content = await response.read()
            if response.status != 200:
                raise _upstream_error(response.status, content)
        answer = self._answer.decode(content)
        vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        return vectors, answer.usage.prompt_tokens

    async def close(self) -> None:
        await self.chat.close()
