"""How fast ``warmgate serve`` answers /health, and how much memory it holds idle.

Starts the real command N times on a free 127.0.0.1 port, polls ``GET /health`` until it
answers 200, reads the server's RSS from /proc, stops it, and prints a table.

    python bench/startup.py [--runs 5] [--profile demo]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx
from processes import free_port


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(profile: str | None) -> tuple[float, float]:
    """Seconds from process start to the first 200 from /health, and RSS (MB) after settling."""
    port = free_port()
    args = [sys.executable, "-m", "warmgate", "serve", "--port", str(port)] + (["--profile", profile] if profile else [])
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass  # not listening yet
                if proc.poll() is not None or time.perf_counter() - started > 30:
                    raise RuntimeError("warmgate serve did not come up")
                time.sleep(0.005)
            ready = time.perf_counter() - started
            time.sleep(0.5)
            return ready, _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", choices=["demo"], default=None)
    opts = parser.parse_args()
    results = [measure(opts.profile) for _ in range(opts.runs)]
    ready = [r for r, _ in results]
    rss = [m for _, m in results]
    print(f"{'metric':<28}{'min':>8}{'median':>8}{'max':>8}  target")
    print(f"{'serve -> /health 200 (s)':<28}{min(ready):>8.3f}{statistics.median(ready):>8.3f}{max(ready):>8.3f}  < 1.0")
    print(f"{'idle RSS (MB)':<28}{min(rss):>8.1f}{statistics.median(rss):>8.1f}{max(rss):>8.1f}  < 120")


if __name__ == "__main__":
    main()
