"""Which gateway process a row in a SQLite pricing file belongs to, and whether it still runs:
the processes sharing a file are on one machine, so a process id that answers signal 0 is alive.
(PostgreSQL, shared across machines, uses leased ``owners`` rows instead.)"""

from __future__ import annotations

import os
import secrets

__all__ = ["is_alive", "new_owner"]


def new_owner() -> str:
    """``pid:random``: the random part tells this gateway from an earlier one with the same pid."""
    return f"{os.getpid()}:{secrets.token_hex(4)}"


def is_alive(owner: str, me: str) -> bool:
    if owner == me:
        return True
    pid = int(owner.partition(":")[0])
    if pid == os.getpid():
        return False  # this process, another gateway: one that ran here before
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
