"""Live sessions priced per output pixel and metered as they run.

A session bills every output segment when it is complete: width x height x its frames, at
``live.price``. Before a segment starts, the next 2 s of output (width x height x 24 x 2) is held
against the caller's key (the ``reserve`` hooks), so a key without the balance stops the session
with an error event instead of running on credit; the first hold is taken when the session is
asked for, so an empty key gets a 402 at once. Each segment is one usage event (``on_usage``),
named ``live-video-to-video:<pipeline>``: the ledger and ``GET /usage`` see sessions like
requests.
"""

from __future__ import annotations

import time
from typing import Any

from warmgate.core.context import RequestContext
from warmgate.core.plugins import await_me_maybe, pm
from warmgate.core.settings import FunctionConfig, Settings
from warmgate.core.usage import Quote, price_wei, report_usage
from warmgate.plugins.live.pipelines import LIVE_PIPELINE, live_function_name, live_price

__all__ = ["LiveMeter"]


HOLD_SECONDS = 2.0
HOLD_FPS = 24


class LiveMeter:
    def __init__(self, app: Any, settings: Settings, session_id: str, pipeline: str, width: int, height: int,
                 key: str | None) -> None:
        self._app = app
        self._settings = settings
        self._session_id = session_id
        self._pixels = width * height
        self._key = key
        self._function = live_function_name(pipeline)
        self._config = FunctionConfig(pipeline=LIVE_PIPELINE, model_id=pipeline, name=self._function,
                                      price=live_price(settings))
        """What is priced and billed: a session runs no function, so the hooks get ``function=None``."""
        self._pipeline = pipeline
        self._hold: Quote | None = None
        self._held_at = 0.0
        self._segments = 0
        self.units = 0
        self.wei = 0

    @property
    def priced(self) -> bool:
        return self._config.price is not None

    def _quote(self, units: int) -> Quote:
        wei = price_wei(self._config, units, self._settings)
        return Quote(function=self._function, pipeline=LIVE_PIPELINE, model_id=self._pipeline, units=units,
                     wei=wei or 0, key=self._key)

    async def hold(self) -> None:
        """Hold the next segment's worth; ``PaymentRequired`` when the key cannot cover it."""
        if not self.priced or self._hold is not None:
            return
        quote = self._quote(self._pixels * HOLD_FPS * round(HOLD_SECONDS))
        for result in pm.hook.reserve(quote=quote, app=self._app):
            await await_me_maybe(result)
        self._hold, self._held_at = quote, time.monotonic()

    async def bill(self, frames: int, *, status: int = 200) -> None:
        """Settle the hold with what ``frames`` output frames cost (0 frames: release it): one
        segment is one request context, billed as any request is (``report_usage``)."""
        if not self.priced or (self._hold is None and not frames):
            return
        held, self._hold = self._hold, None
        self._segments += 1
        segment = RequestContext(f"{self._session_id}-{self._segments}")
        segment.config = self._config
        segment.quote = held or self._quote(0)
        segment.usage.units = self._pixels * frames
        event = await report_usage(self._app, segment, status, time.monotonic() - self._held_at, billed=True)
        self.units += event.units
        self.wei += event.wei
