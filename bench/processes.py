"""Helpers the bench scripts share: a free loopback port, ``warmgate serve`` on one, and stopping
a server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["free_port", "serve_gateway", "stop"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_gateway(config: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                  quiet: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """``warmgate serve --config config`` on a free 127.0.0.1 port (not waited for): the process
    and its base URL. ``quiet`` sends its output to /dev/null."""
    port = free_port()
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port", str(port)],
                            stdout=output, stderr=output, env=env, cwd=cwd)
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (``/proc/<pid>/stat``): what a request costs it,
    whatever else the machine's cores are busy with, where a latency is not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
