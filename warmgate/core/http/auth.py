"""Who is calling: bearer tokens (or ``X-Api-Key``) on generate routes, answered by the ``authenticate`` hooks (keys
with balances, from the pricing plugin) or by the configured ``auth.api_keys``."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

import msgspec

from warmgate.core.http.errors import Forbidden, Unauthorized
from warmgate.core.plugins import await_me_maybe, pm

__all__ = ["Authenticator", "BearerAuth", "Caller", "allows", "bearer_token"]


def allows(entry: str, function: str, aliases: Sequence[str] = (), pipeline: str = "") -> bool:
    """Whether one of a key's allowed names covers ``function``: its own name, one of its
    aliases, or the name of its pipeline (``text-to-speech`` covers every text-to-speech
    function, ``live-video-to-video`` every live pipeline)."""
    return entry == function or entry in aliases or (bool(pipeline) and entry == pipeline)


class Caller(msgspec.Struct, frozen=True):
    """An authenticated caller. ``key`` names it in the ledger (``None``: an operator key from
    ``auth.api_keys``); ``functions`` limits what it may call (``None``: everything)."""

    key: str | None = None
    functions: frozenset[str] | None = None

    def may_call(self, function: str, aliases: Sequence[str] = (), pipeline: str = "") -> bool:
        """Whether the key may call ``function`` (see ``allows``)."""
        return self.functions is None or any(allows(entry, function, aliases, pipeline) for entry in self.functions)

    def check_allowed(self, function: str, aliases: Sequence[str] = (), pipeline: str = "") -> None:
        """Raise ``Forbidden`` (403) unless the key may call ``function``."""
        if self.may_call(function, aliases, pipeline):
            return
        raise Forbidden(f"key {self.key} may not call {function!r}; it may call: {', '.join(sorted(self.functions))}")


OPERATOR = Caller()


class BearerAuth:
    """Checks a token against the configured keys, in constant time."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def matches(self, token: str) -> bool:
        given = token.encode()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not depend on which key matched
            matched |= hmac.compare_digest(given, key)
        return matched

    def check(self, authorization: str | None) -> None:
        """Raise ``Unauthorized`` (401, ``WWW-Authenticate: Bearer``) unless a key matches."""
        if not self.matches(bearer_token(authorization)):
            raise Unauthorized("Invalid bearer token")


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing bearer token: send Authorization: Bearer <key>")
    return token.strip()


class Authenticator:
    """Auth is on when ``auth.api_keys`` is set or ``auth.keys`` is true; then every generate
    request needs a token that an ``authenticate`` hook or the operator keys accept."""

    def __init__(self, api_keys: Sequence[str], keys: bool) -> None:
        self.operators = BearerAuth(api_keys)
        self.enabled = self.operators.enabled or keys
        self._hooked = keys or bool(pm.hook.authenticate.get_hookimpls())

    async def __call__(self, scope: Any, app: Any) -> Caller | None:
        """The caller of this request, or ``None`` when auth is off."""
        if not self.enabled:
            return None
        token = _token(scope)
        if self._hooked:
            caller = await await_me_maybe(pm.hook.authenticate(token=token, app=app))
            if caller is not None:
                return caller
        if self.operators.matches(token):
            return OPERATOR
        raise Unauthorized("Invalid bearer token")


def _token(scope: Any) -> str:
    """The bearer token, or without an ``Authorization`` header the ``X-Api-Key`` one (as the
    Anthropic SDK sends its key)."""
    authorization = _header(scope, b"authorization")
    if authorization is None:
        api_key = (_header(scope, b"x-api-key") or "").strip()
        if api_key:
            return api_key
    return bearer_token(authorization)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
