"""Optional bearer tokens on generate routes, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from warmgate.core.errors import Unauthorized

__all__ = ["BearerAuth"]


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against the configured keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise ``Unauthorized`` (401, ``WWW-Authenticate: Bearer``) unless a key matches."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Missing bearer token: send Authorization: Bearer <key>")
        given = token.strip().encode()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not depend on which key matched
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise Unauthorized("Invalid bearer token")
