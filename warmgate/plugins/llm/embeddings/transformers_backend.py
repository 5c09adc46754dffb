"""In-process embeddings with transformers: one padded forward pass per request, pooled as the
model's sentence-transformers config says (else mean), normalised, then Matryoshka-truncated
and renormalised when ``dimensions`` asks for fewer values."""

from __future__ import annotations

import asyncio
from typing import Any

from warmgate.core.functions.spec import module_bytes
from warmgate.plugins.llm.embeddings.encoder import describe
from warmgate.plugins.llm.embeddings.wire import EmbeddingJob

__all__ = ["TransformersEmbedder", "load_transformers_embedder"]


def load_transformers_embedder(model_id: str, options: dict[str, Any]) -> TransformersEmbedder:
    """Load the encoder (a worker thread calls this). Options: ``dtype``, ``device``,
    ``trust_remote_code``, as for the LLM transformers backend."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ImportError(f"the transformers embeddings backend needs the [llm] extra "
                          f"(pip install torch, then pip install 'warmgate[llm]'): {exc}") from exc

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = options.get("dtype", "auto")
    encoder = describe(model_id)
    model = AutoModel.from_pretrained(model_id, dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                                      trust_remote_code=bool(options.get("trust_remote_code", False)))
    model.to(device)
    model.eval()
    return TransformersEmbedder(model, encoder)


class TransformersEmbedder:
    def __init__(self, model: Any, encoder: Any) -> None:
        self.model = model
        self.encoder = encoder
        self.memory_bytes = module_bytes(model)

    def _forward(self, token_ids: list[list[int]], dimensions: int | None) -> Any:
        import torch

        from warmgate.plugins.llm.embeddings.pooling import pool

        batch = self.encoder.tokenizer.pad({"input_ids": token_ids}, padding=True, return_tensors="pt")
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            vectors = pool(hidden, batch["attention_mask"], self.encoder.pooling)
            if dimensions is not None:
                vectors = torch.nn.functional.normalize(vectors[:, :dimensions], dim=-1)
        return vectors.cpu().numpy()

    async def embed(self, job: EmbeddingJob) -> tuple[Any, int]:
        """``(vectors [inputs, dims] as float32 numpy, prompt tokens)``."""
        token_ids = job.token_ids
        if token_ids is None:  # the gateway did not tokenise it (no tokenizer recorded for the function)
            token_ids = await asyncio.to_thread(self.encoder.tokenize, job.texts or [])
            self.encoder.check(token_ids, job.request.dimensions, from_client=False)
        vectors = await asyncio.to_thread(self._forward, token_ids, job.request.dimensions)
        return vectors, sum(map(len, token_ids))

    async def close(self) -> None:
        self.model = None
