"""Wire types of the core routes, shaped as the Livepeer runner spec has them."""

from __future__ import annotations

from typing import Literal

import msgspec

from warmgate.core.hardware import GPUComputeInfo, GPUUtilizationInfo
from warmgate.core.settings import Price

__all__ = [
    "APIError",
    "FunctionInfo",
    "RemoteInfo",
    "RunnerInfo",
    "FunctionList",
    "HTTPError",
    "HTTPValidationError",
    "HardwareInformation",
    "HardwareStats",
    "HealthCheck",
    "ValidationError",
    "Version",
]


class HealthCheck(msgspec.Struct):
    status: Literal["LOADING", "OK", "ERROR", "IDLE"]
    """LOADING while a model loads, ERROR when a function failed to load, OK while serving, else IDLE."""


class Version(msgspec.Struct):
    pipeline: str
    model_id: str
    version: str


class HardwareInformation(msgspec.Struct):
    pipeline: str
    model_id: str
    gpu_info: dict[str, GPUComputeInfo]


class HardwareStats(msgspec.Struct):
    pipeline: str
    model_id: str
    gpu_stats: dict[str, GPUUtilizationInfo]


class RemoteInfo(msgspec.Struct):
    url: str
    status: str
    error: str | None


class RunnerInfo(msgspec.Struct):
    """One runner of a routed function, as this gateway sees it (no token)."""

    url: str
    state: str
    """Its last ``/health``: LOADING, OK, IDLE, ERROR, or UNREACHABLE (NOT CONNECTED while the
    function is cold here)."""
    warm: bool
    """The function's model is loaded there."""
    in_flight: int
    requests: int
    failures: int
    """Attempts that failed there (refused, reset, timed out, a 5xx answer, a stream cut off)."""
    retries: int
    """Of those, the ones tried again on another runner."""
    cooldowns: int
    last_error: str | None
    cooldown_until: float | None
    """Unix seconds when its cooldown ends, while it is in one."""
    price: Price | None
    """Its own price; None: the function's."""
    weight: int
    max_concurrency: int


class FunctionInfo(msgspec.Struct):
    name: str
    pipeline: str
    model_id: str
    state: str
    executor: str
    warm: bool
    loads: int
    requests: int
    in_flight: int
    queued: int
    max_concurrency: int
    max_queue: int
    idle_timeout: float
    last_error: str | None
    load_seconds: float | None
    last_used_at: float | None
    memory_bytes: int | None
    demo: bool
    remote: RemoteInfo | None = None
    """``executor: remote``: the (first) runner and its last ``/health`` (LOADING, OK, IDLE, ERROR, UNREACHABLE)."""
    runners: list[RunnerInfo] | None = None
    """``executor: remote``: every runner with its state, load and price."""


class FunctionList(msgspec.Struct):
    functions: list[FunctionInfo]


class APIError(msgspec.Struct):
    msg: str
    """The error message."""


class HTTPError(msgspec.Struct):
    detail: APIError


class ValidationError(msgspec.Struct):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(msgspec.Struct):
    detail: list[ValidationError]
