"""GPU facts for ``/hardware/info`` and ``/hardware/stats`` through NVML; empty without GPUs."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

__all__ = ["GPUComputeInfo", "GPUUtilizationInfo", "gpu_info", "gpu_stats"]


class GPUComputeInfo(msgspec.Struct):
    id: str
    name: str
    memory_total: int
    memory_free: int
    major: int
    minor: int


class GPUUtilizationInfo(msgspec.Struct):
    id: str
    name: str
    memory_total: int
    memory_free: int
    utilization_compute: int
    utilization_memory: int


@functools.cache
def _nvml() -> Any:
    """The initialised ``pynvml`` module, or None where there is no driver or no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library, no driver, no device: all mean "no GPUs"
        return None


def _devices() -> list[tuple[str, Any, Any]]:
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        return [(str(i), nvml, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return []


def _name(nvml: Any, handle: Any) -> str:
    name = nvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else str(name)


def gpu_info() -> dict[str, GPUComputeInfo]:
    out = {}
    for index, nvml, handle in _devices():
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        out[index] = GPUComputeInfo(id=nvml.nvmlDeviceGetUUID(handle), name=_name(nvml, handle),
                                    memory_total=memory.total, memory_free=memory.free, major=major, minor=minor)
    return out


def gpu_stats() -> dict[str, GPUUtilizationInfo]:
    out = {}
    for index, nvml, handle in _devices():
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
        out[index] = GPUUtilizationInfo(id=nvml.nvmlDeviceGetUUID(handle), name=_name(nvml, handle),
                                        memory_total=memory.total, memory_free=memory.free,
                                        utilization_compute=rates.gpu, utilization_memory=rates.memory)
    return out
