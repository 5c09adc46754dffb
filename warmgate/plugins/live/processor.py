"""Live pipelines as plugins: a frame processor in the spirit of PyTrickle's ``FrameProcessor``,
registered with the ``register_live_pipelines`` hook, and the params every live pipeline takes
(the ai-runner's ``BaseParams``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from warmgate.core.errors import RequestValidationError
from warmgate.core.hookspecs import hookspec
from warmgate.core.plugins import load_plugins, pm

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FrameProcessor", "LiveParams", "NoopProcessor", "get_live_pipelines", "parse_params"]


class LiveParams(msgspec.Struct, kw_only=True):
    """Output size: 384 to 1024 pixels, a multiple of 64, as the ai-runner's ``BaseParams``;
    a pipeline's own params ride along."""

    width: int = 512
    height: int = 512


def parse_params(params: dict[str, Any]) -> LiveParams:
    """422 naming the field when a size is out of range or not a multiple of 64."""
    for name in ("width", "height"):
        value = params.get(name, 512)
        if isinstance(value, bool) or not isinstance(value, int) or not 384 <= value <= 1024 or value % 64:
            raise RequestValidationError.single(
                ["body", "params", name], f"Expected an integer from 384 to 1024, a multiple of 64; got {value!r}",
                "value_error")
    return LiveParams(width=params.get("width", 512), height=params.get("height", 512))


class FrameProcessor:
    """One live session's frames. Override what you need; frames are RGB ``(H, W, 3)`` uint8
    arrays already cropped to the params' size, and what ``process_video`` returns (same shape)
    is encoded. Methods are awaited on the event loop: run heavy work in a thread."""

    async def load_model(self, **params: Any) -> None:
        """Called once before the first frame, with the session's initial params."""

    async def process_video(self, frame: np.ndarray) -> np.ndarray:
        return frame

    async def update_params(self, params: dict[str, Any]) -> None:
        """A complete params dict from the control channel (keepalives are not passed on)."""

    async def stop(self) -> None:
        """The session ended."""


class NoopProcessor(FrameProcessor):
    """Frames pass through unchanged: the reference pipeline, and the default one."""


ProcessorFactory = Callable[[], FrameProcessor]


class LivePipelineSpecs:
    @hookspec
    def register_live_pipelines(self, register: Any) -> None:
        """Register live pipelines with ``register(name, factory)``: ``factory()`` makes one
        session's ``FrameProcessor``; a ``/live-video-to-video`` request picks it by ``model_id``."""


pm.add_hookspecs(LivePipelineSpecs)


def get_live_pipelines() -> dict[str, ProcessorFactory]:
    load_plugins()
    pipelines: dict[str, ProcessorFactory] = {}
    for impl in pm.hook.register_live_pipelines.get_hookimpls():

        def register(name: str, factory: ProcessorFactory, _plugin: str = impl.plugin_name) -> None:
            if name in pipelines:
                raise ValueError(f"live pipeline {name!r} is registered twice (again by {_plugin!r})")
            pipelines[name] = factory

        impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
    return pipelines
