"""The live plugin's section of ``serverless.yaml``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from warmgate.core.settings import Positive, Price, Seconds, SettingsSection

__all__ = ["LiveSettings"]


class LiveSettings(SettingsSection):
    """``live:``: live video sessions (``/live-video-to-video``, ``/live/sessions``)."""

    key: ClassVar[str] = "live"

    price: Price | None = None
    """Per output pixel: a second of 512x512 output at 24 fps is 512*512*24 units; metered after
    every output segment. Blank: live sessions are not priced."""
    max_sessions: Positive = 4
    """Sessions running at once; one more gets 503."""
    input_timeout: Seconds = 60.0
    """A session whose input sends nothing for this long ends with an error event (the
    ai-runner stops a stream after 60 s without input)."""
    status_interval: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds between status events."""
    max_lag: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    """A pipeline slower than its input skips frames once it is this many seconds behind, so
    latency stays bounded."""
    pipelines: dict[str, dict[str, Any]] = {}
    """Options per live pipeline, passed to its factory, e.g. ``{diffusion: {model_id: ...}}``."""
