"""The embeddings runner: a backend's vectors in the OpenAI shape, usage on the access log and
in the ledger (``prompt_tokens``)."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any, Protocol

from warmgate.core.context import current_request
from warmgate.core.functions.spec import Runner
from warmgate.plugins.llm.embeddings.wire import Embedding, EmbeddingJob, EmbeddingList, EmbeddingUsage

__all__ = ["EmbeddingBackend", "EmbeddingsRunner", "encode_base64"]


class EmbeddingBackend(Protocol):
    async def embed(self, job: EmbeddingJob) -> tuple[Any, int]:
        """``(vectors, prompt tokens)``: one vector per input, in order, already cut to
        ``dimensions``; a vector is floats, or a base64 string an engine encoded itself."""

    async def close(self) -> None: ...


def encode_base64(vector: Any) -> str:
    """Little-endian float32 bytes, base64: what OpenAI sends and its SDK decodes."""
    if hasattr(vector, "astype"):  # numpy
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


class EmbeddingsRunner(Runner):
    def __init__(self, model_id: str, backend: EmbeddingBackend) -> None:
        self.model_id = model_id
        self.backend = backend
        self.memory_bytes = getattr(backend, "memory_bytes", None)

    async def __call__(self, job: EmbeddingJob) -> EmbeddingList:
        vectors, prompt_tokens = await self.backend.embed(job)
        as_base64 = job.request.encoding_format == "base64"
        data = []
        for index, vector in enumerate(vectors):
            if isinstance(vector, str):
                value: list[float] | str = vector
            elif as_base64:
                value = encode_base64(vector)
            else:
                value = vector.tolist() if hasattr(vector, "tolist") else vector
            data.append(Embedding(index=index, embedding=value))
        context = current_request()
        if context is not None:  # no completion tokens: a ``settle: usage`` price keeps its exact quote
            context.report_tokens(prompt_tokens, None)
            context.log_fields["llm"] = {"model": self.model_id, "inputs": len(data), "prompt_tokens": prompt_tokens}
        return EmbeddingList(data=data, model=self.model_id,
                             usage=EmbeddingUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens))

    async def close(self) -> None:
        await self.backend.close()
