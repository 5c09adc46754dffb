"""The live pipeline contract: a frame processor in the spirit of PyTrickle's ``FrameProcessor``,
registered with the ``register_live_pipelines`` hook. The core holds the contract (as it holds
``PipelineSpec``), so any plugin can offer a live pipeline and the live plugin runs them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warmgate.core.functions.spec import DemoModel
from warmgate.core.plugins import load_plugins, pm
from warmgate.core.registry import Registry, collect
from warmgate.core.settings import Price, Settings
from warmgate.plugins.live.settings import LiveSettings

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEMO_LIVE_PRICE", "LIVE_PIPELINE", "FrameProcessor", "LivePipeline", "get_live_pipelines",
           "live_function_name", "live_price"]

LIVE_PIPELINE = "live-video-to-video"
DEMO_LIVE_PRICE = Price(price_per_unit=1000)
"""The demo profile's example price, so demo sessions are metered too: 1,000 wei per output
pixel, 6.3e9 wei (about $0.07 an hour at $3,000 per ETH) per second of 512x512 at 24 fps."""


def live_price(settings: Settings) -> Price | None:
    """Per output pixel: ``live.price``; under the demo profile, the example price if unset."""
    if settings.section(LiveSettings).price is None and settings.profile == "demo":
        return DEMO_LIVE_PRICE
    return settings.section(LiveSettings).price


def live_function_name(pipeline: str) -> str:
    """The name a live pipeline is billed and allowed under (a key's ``--function``)."""
    return f"{LIVE_PIPELINE}:{pipeline}"


class FrameProcessor:
    """One live session's frames. Override what you need; frames are RGB ``(H, W, 3)`` uint8
    arrays already cropped to the params' size, and what ``process_video`` returns (same shape)
    is encoded. Audio is passed through. Methods are awaited on the event loop: run heavy work
    in a thread (``asyncio.to_thread``)."""

    async def load_model(self, **params: Any) -> None:
        """Called once before the first frame, with the session's initial params."""

    async def process_video(self, frame: np.ndarray) -> np.ndarray:
        return frame

    async def update_params(self, params: dict[str, Any]) -> None:
        """A complete params dict from the control channel (keepalives are not passed on)."""

    async def stop(self) -> None:
        """The session ended: release what ``load_model`` took that is not shared."""


ProcessorFactory = Callable[..., FrameProcessor]


@dataclass(frozen=True, kw_only=True)
class LivePipeline:
    """A registered live pipeline. ``factory(**options)`` makes one session's processor;
    ``options`` come from ``live.pipelines.<name>`` in the settings (with the demo profile, a
    ``model_id`` pointing at ``demo``'s tiny model when none is configured)."""

    name: str
    factory: ProcessorFactory
    demo: DemoModel | None = None
    plugin: str = ""


def get_live_pipelines() -> dict[str, LivePipeline]:
    load_plugins()
    pipelines: Registry[LivePipeline] = Registry("live pipeline")

    def register(plugin: str, name: str, factory: ProcessorFactory, *, demo: DemoModel | None = None) -> None:
        if not callable(factory):
            raise TypeError(f"live pipeline {name!r} (plugin {plugin!r}): factory must be callable")
        pipelines.add(plugin, name, LivePipeline(name=name, factory=factory, demo=demo, plugin=plugin))

    collect(pm.hook.register_live_pipelines, register)
    return pipelines.items
