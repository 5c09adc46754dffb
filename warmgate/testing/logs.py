"""Reading a test gateway's JSON access log from captured stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from warmgate.testing.waiting import wait_for

__all__ = ["access_lines"]


def access_lines(capfd: Any, request_ids: Iterable[str], timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The access-log lines (``"event": "request"``) of ``request_ids``, by request id, read from
    pytest's ``capfd`` as they are written (lines are flushed at the end of an event-loop turn).
    Raises ``AssertionError`` naming the ids whose line did not come."""
    wanted = set(request_ids)
    lines: dict[str, dict[str, Any]] = {}

    def logged() -> bool:
        for line in capfd.readouterr().err.splitlines():
            if line.startswith("{") and '"event":"request"' in line:
                entry = json.loads(line)
                lines[entry["request_id"]] = entry
        return wanted <= set(lines)

    assert wait_for(logged, timeout=timeout), f"no access-log line for {sorted(wanted - set(lines))}"
    return lines
