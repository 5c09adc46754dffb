"""Sentence-transformers pooling read from a model's own files (``modules.json``,
``1_Pooling/config.json``) and applied with torch, so the transformers backend gives the
embeddings sentence-transformers would without depending on it (it brings scikit-learn, scipy
and its own model classes, and the backend needs only these few lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["MODES", "pool", "read_pooling"]

_CONFIG_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens", "lasttoken": "pooling_mode_lasttoken"}
MODES = tuple(_CONFIG_KEYS)
"""The pooling modes supported, in the order sentence-transformers concatenates them."""

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


def _model_file(model_id: str, name: str) -> Path | None:
    """``name`` inside the model directory or its hub snapshot, or None if it has none."""
    local = Path(model_id) / name
    if Path(model_id).is_dir():
        return local if local.is_file() else None
    from transformers.utils import cached_file

    found = cached_file(model_id, name, _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    return Path(found) if found else None


def read_pooling(model_id: str) -> tuple[str, ...]:
    """The pooling modes of ``model_id``: from its sentence-transformers config when it has
    one, else mean pooling. A pipeline with modules warmgate does not apply (a Dense
    projection, weighted-mean pooling) is refused rather than answered wrongly."""
    modules_file = _model_file(model_id, "modules.json")
    if modules_file is None:
        return ("mean",)
    modules: list[dict[str, Any]] = json.loads(modules_file.read_text())
    unsupported = [m["type"] for m in modules if m.get("type") not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unsupported:
        raise ValueError(f"{model_id}: its sentence-transformers modules {unsupported} are not applied by the "
                         f"transformers embeddings backend (it does Transformer, Pooling and Normalize)")
    pooling = next((m for m in modules if m.get("type") == _POOLING), None)
    if pooling is None:
        return ("mean",)
    config_file = _model_file(model_id, f"{pooling.get('path') or '1_Pooling'}/config.json")
    config: dict[str, Any] = json.loads(config_file.read_text()) if config_file is not None else {}
    if config.get("pooling_mode_weightedmean_tokens"):
        raise ValueError(f"{model_id}: weighted-mean pooling is not supported by the transformers embeddings backend")
    modes = tuple(mode for mode, key in _CONFIG_KEYS.items() if config.get(key))
    return modes or ("mean",)


def pool(hidden: Any, mask: Any, modes: tuple[str, ...]) -> Any:
    """``[batch, tokens, hidden]`` states to ``[batch, len(modes) * hidden]``, padding masked
    out (inputs are right-padded), then L2-normalised."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    lengths = weights.sum(1).clamp(min=1)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(1).values)
        elif mode == "mean":
            parts.append((hidden * weights).sum(1) / lengths)
        elif mode == "mean_sqrt_len":
            parts.append((hidden * weights).sum(1) / lengths.sqrt())
        else:  # lasttoken
            last = mask.sum(1).clamp(min=1) - 1
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
    return torch.nn.functional.normalize(torch.cat(parts, dim=-1).float(), dim=-1)
