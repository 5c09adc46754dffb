"""Wire types of the core routes, shaped as the Livepeer runner spec has them."""

from __future__ import annotations

from typing import Literal

import msgspec

from warmgate.core.hardware import GPUComputeInfo, GPUUtilizationInfo

__all__ = [
    "APIError",
    "FunctionInfo",
    "RemoteInfo",
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
    """``executor: remote``: the runner and its last ``/health`` (LOADING, OK, IDLE, ERROR, UNREACHABLE)."""


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
