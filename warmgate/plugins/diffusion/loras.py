"""LoRAs per request: ``loras`` is a JSON object ``{"repo/or/path": weight}``. Adapters load once
per function and stay cached (least recently used dropped beyond ``max_loras``)."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import structlog

from warmgate.core.http.decode import json_field
from warmgate.core.http.errors import ClientError

__all__ = ["MAX_LORAS_PER_REQUEST", "LoraCache", "parse_loras"]

MAX_LORAS_PER_REQUEST = 4
_log = structlog.get_logger("warmgate.diffusion")


def parse_loras(text: str) -> dict[str, float]:
    """The request's ``loras`` field, checked: a JSON object of at most four names → weight ≥ 0."""
    if not text.strip():
        return {}
    value = json_field("loras", text, 'an object like {"nerijs/pixel-art-xl": 1.0}')
    if not isinstance(value, dict):
        raise ClientError(f"loras: expected a JSON object mapping LoRA ids to weights, got {type(value).__name__}")
    if len(value) > MAX_LORAS_PER_REQUEST:
        raise ClientError(f"loras: at most {MAX_LORAS_PER_REQUEST} LoRAs per request, got {len(value)}")
    loras: dict[str, float] = {}
    for name, weight in value.items():
        if not name.strip():
            raise ClientError("loras: a LoRA id is empty")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ClientError(f"loras: the weight of {name!r} must be a number, got {weight!r}")
        if weight < 0:
            raise ClientError(f"loras: the weight of {name!r} must not be negative, got {weight}")
        loras[name] = float(weight)
    return loras


class LoraCache:
    """The adapters loaded into one pipeline. Not thread-safe: the runner holds its lock."""

    def __init__(self, pipe: Any, max_loaded: int = 8) -> None:
        self.pipe = pipe
        self.max_loaded = max(max_loaded, MAX_LORAS_PER_REQUEST)
        self.loaded: OrderedDict[str, str] = OrderedDict()  # LoRA id -> adapter name, oldest first
        self._counter = 0

    def activate(self, loras: dict[str, float], model_id: str) -> None:
        """Make exactly ``loras`` active with their weights (none: LoRAs off)."""
        if not loras:
            if self.loaded:
                self.pipe.disable_lora()
            return
        if not hasattr(self.pipe, "load_lora_weights"):
            raise ClientError(f"loras: model {model_id!r} does not support LoRAs")
        for name in loras:
            self._load(name, keep=set(loras))
        self.pipe.enable_lora()
        self.pipe.set_adapters([self.loaded[n] for n in loras], adapter_weights=list(loras.values()))

    def _load(self, name: str, keep: set[str]) -> None:
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return
        while len(self.loaded) >= self.max_loaded:
            evict = next((n for n in self.loaded if n not in keep), None)
            if evict is None:
                break
            self.pipe.delete_adapters(self.loaded.pop(evict))
            _log.info("lora_unloaded", lora=evict)
        self._counter += 1
        adapter = f"lora{self._counter}"
        try:
            self.pipe.load_lora_weights(name, adapter_name=adapter)
        except Exception as exc:  # missing repo/file, wrong shapes: the client's choice of LoRA
            raise ClientError(f"loras: {name!r} could not be loaded: {type(exc).__name__}: {exc}") from None
        self.loaded[name] = adapter
        _log.info("lora_loaded", lora=name, adapter=adapter)
