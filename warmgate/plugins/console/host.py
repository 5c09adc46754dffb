"""The machine the gateway runs on, for the console's hardware panel when there is no GPU (and
beside the GPUs when there are): CPU model and count, load, memory, the gateway's own RSS."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

import msgspec

__all__ = ["HostInfo", "host_info"]


class HostInfo(msgspec.Struct, kw_only=True):
    cpu_model: str
    cpu_count: int
    load_average: list[float] | None
    """1, 5 and 15 minute load averages, where the system reports them."""
    memory_total: int | None
    """Bytes of RAM, where ``/proc/meminfo`` is readable (Linux)."""
    memory_available: int | None
    process_max_rss: int | None
    """Peak resident memory of the gateway process, bytes (``None`` where ``resource`` is missing)."""
    platform: str
    python: str


def host_info() -> HostInfo:
    """Read on each call: load and free memory change (cheap: a few small ``/proc`` files)."""
    memory = _meminfo()
    return HostInfo(
        cpu_model=_cpu_model(), cpu_count=os.cpu_count() or 1,
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        memory_total=memory.get("MemTotal"), memory_available=memory.get("MemAvailable"),
        process_max_rss=_max_rss(), platform=platform.platform(terse=True), python=platform.python_version(),
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):  # not Linux: fall back to what platform knows
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _meminfo() -> dict[str, int]:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024  # the file counts kB
    return out


def _max_rss() -> int | None:
    try:
        import resource  # Unix only
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, kB on Linux
