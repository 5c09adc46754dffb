"""The ``tracing:`` section of ``serverless.yaml``: a core section (tracing follows requests
through the core's middleware, functions and executors), declared as the ray executor's is."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, ClassVar

import msgspec

from warmgate.core.settings import Positive, SettingsSection

__all__ = ["TracingSettings", "url_problem"]


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a collector's OTLP/HTTP endpoint, or None."""
    expected = f"expected an http(s) URL such as http://collector:4318, got {url!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        return f"{expected} ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return expected
    return None


class TracingSettings(SettingsSection):
    """``tracing:``: OpenTelemetry traces over OTLP/HTTP (the ``[otel]`` extra). Off while no
    endpoint is set, here or in ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    key: ClassVar[str] = "tracing"

    endpoint: str = ""
    """The collector, e.g. ``http://collector:4318`` (``/v1/traces`` is added)."""
    service_name: str = ""
    """The spans' ``service.name``; blank: ``$OTEL_SERVICE_NAME``, else ``warmgate``."""
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    """The share of new traces recorded (a caller's ``traceparent`` decides for its own trace);
    blank: ``$OTEL_TRACES_SAMPLER`` / ``$OTEL_TRACES_SAMPLER_ARG``, else 1."""
    headers: dict[str, str] = {}
    """Sent with every export (a collector's API key), over ``$OTEL_EXPORTER_OTLP_HEADERS``."""
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """Seconds an export may take (in the background); ``$OTEL_EXPORTER_OTLP_TIMEOUT`` (ms) wins."""
    max_queue: Positive = 2048
    """Finished traces waiting for export; beyond that new ones are dropped (a collector that is
    down costs spans, never requests)."""

    def __post_init__(self) -> None:
        if self.endpoint:
            problem = url_problem(self.endpoint)
            if problem is not None:
                raise ValueError(f"`endpoint`: {problem}")
