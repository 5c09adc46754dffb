"""The params every live pipeline takes (the ai-runner's ``BaseParams``) and the built-in
``noop`` pipeline. The frame processor contract itself is ``warmgate.plugins.live.pipelines``."""

from __future__ import annotations

from typing import Any

import msgspec

from warmgate.core.http.errors import RequestValidationError
from warmgate.plugins.live.pipelines import FrameProcessor

__all__ = ["LiveParams", "NoopProcessor", "parse_params"]


class LiveParams(msgspec.Struct, kw_only=True):
    """Output size: 384 to 1024 pixels, a multiple of 64, as the ai-runner's ``BaseParams``;
    a pipeline's own params ride along."""

    width: int = 512
    height: int = 512


def parse_params(params: dict[str, Any]) -> LiveParams:
    """422 naming the field when a size is out of range or not a multiple of 64."""
    for name in ("width", "height"):
        value = params.get(name, 512)
        if isinstance(value, bool) or not isinstance(value, int) or not 384 <= value <= 1024 or value % 64:
            raise RequestValidationError.single(
                ["body", "params", name], f"Expected an integer from 384 to 1024, a multiple of 64; got {value!r}",
                "value_error")
    return LiveParams(width=params.get("width", 512), height=params.get("height", 512))


class NoopProcessor(FrameProcessor):
    """Frames pass through unchanged: the reference pipeline, and the default one."""
