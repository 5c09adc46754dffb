"""Hugging Face model ids to Ollama model names, so one ``model_id`` (the Livepeer way of naming
a model) can be served by Ollama, which pulls from its own library under its own tags."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["OLLAMA_NAMES", "ollama_name"]

OLLAMA_NAMES: dict[str, str] = {
    # The Livepeer AI LLM table.
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "llama3.1:8b",
    "meta-llama/Meta-Llama-3.1-70B-Instruct": "llama3.1:70b",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral:7b",
    "google/gemma-2-9b-it": "gemma2:9b",
    # Llama 3, 3.1 (both spellings of the repo names), 3.2, 3.3.
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama3:8b",
    "meta-llama/Meta-Llama-3-70B-Instruct": "llama3:70b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3.1:8b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama3.1:70b",
    "meta-llama/Meta-Llama-3.1-405B-Instruct": "llama3.1:405b",
    "meta-llama/Llama-3.1-405B-Instruct": "llama3.1:405b",
    "meta-llama/Llama-3.2-1B-Instruct": "llama3.2:1b",
    "meta-llama/Llama-3.2-3B-Instruct": "llama3.2:3b",
    "meta-llama/Llama-3.3-70B-Instruct": "llama3.3:70b",
    # Gemma 2.
    "google/gemma-2-2b-it": "gemma2:2b",
    "google/gemma-2-27b-it": "gemma2:27b",
    # Mistral and Mixtral.
    "mistralai/Mistral-Nemo-Instruct-2407": "mistral-nemo:12b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral:8x7b",
    "mistralai/Mixtral-8x22B-Instruct-v0.1": "mixtral:8x22b",
    # Qwen 2.5.
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5:0.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5:1.5b",
    "Qwen/Qwen2.5-3B-Instruct": "qwen2.5:3b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5:7b",
    "Qwen/Qwen2.5-14B-Instruct": "qwen2.5:14b",
    "Qwen/Qwen2.5-32B-Instruct": "qwen2.5:32b",
    "Qwen/Qwen2.5-72B-Instruct": "qwen2.5:72b",
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": "qwen2.5-coder:1.5b",
    "Qwen/Qwen2.5-Coder-7B-Instruct": "qwen2.5-coder:7b",
    "Qwen/Qwen2.5-Coder-14B-Instruct": "qwen2.5-coder:14b",
    "Qwen/Qwen2.5-Coder-32B-Instruct": "qwen2.5-coder:32b",
    # Phi.
    "microsoft/Phi-3.5-mini-instruct": "phi3.5:3.8b",
    "microsoft/phi-4": "phi4:14b",
    # DeepSeek R1 distills: the explicit tags, because the short ``deepseek-r1:8b`` tag has
    # been moved to a different (Qwen3-based) distill.
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": "deepseek-r1:1.5b-qwen-distill-q4_K_M",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "deepseek-r1:7b-qwen-distill-q4_K_M",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "deepseek-r1:8b-llama-distill-q4_K_M",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": "deepseek-r1:14b-qwen-distill-q4_K_M",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": "deepseek-r1:32b-qwen-distill-q4_K_M",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": "deepseek-r1:70b-llama-distill-q4_K_M",
}
"""Hugging Face id -> Ollama library name; looked up without regard to case."""

_BY_LOWER = {hf_id.lower(): name for hf_id, name in OLLAMA_NAMES.items()}

_OLLAMA_TAG = re.compile(r"[A-Za-z0-9][\w.\-]*:[\w.\-]+")
"""``name:tag`` without a namespace: already an Ollama name (Hugging Face ids have no ``:``)."""

_GGUF_REPO = re.compile(r"(?P<repo>[\w.\-]+/[\w.\-]+-GGUF)(?P<quant>:[\w.\-]+)?", re.IGNORECASE)
"""``owner/Model-GGUF`` with an optional ``:Q4_K_M``: Ollama pulls these from Hugging Face itself."""


def ollama_name(model_id: str, overrides: Mapping[str, str] | None = None) -> str:
    """The Ollama name for ``model_id``: ``overrides`` first, then the table (both ignoring
    case), then ``hf.co/<repo>`` for GGUF repos; Ollama names pass through unchanged."""
    key = model_id.strip().lower()
    for hf_id, name in (overrides or {}).items():
        if hf_id.strip().lower() == key:
            return name
    if key in _BY_LOWER:
        return _BY_LOWER[key]
    if key.startswith("hf.co/") or _OLLAMA_TAG.fullmatch(model_id.strip()):
        return model_id.strip()
    gguf = _GGUF_REPO.fullmatch(model_id.strip())
    if gguf:
        return f"hf.co/{gguf['repo']}{gguf['quant'] or ''}"
    raise ValueError(
        f"no Ollama name for model id {model_id!r}: it is not in the built-in table, not a GGUF repo "
        f"and not an Ollama 'name:tag'; map it with options.names, e.g. {{{model_id!r}: 'llama3.1:8b'}}"
    )
