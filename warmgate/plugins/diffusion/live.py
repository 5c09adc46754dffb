"""The ``diffusion`` live pipeline: every frame through image-to-image, StreamDiffusion-style.

What makes it real-time-minded: the model is loaded once and shared by every session on it
(released when the last one stops); the prompt is encoded once per params update, not per
frame; few steps (default 2 steps at strength 0.5, one denoising step, the sd-turbo recipe) with
no classifier-free guidance; and the same seed for every frame, so a still scene stays still
instead of boiling. Params (all optional, changed live over the control channel): ``prompt``,
``strength``, ``num_inference_steps``, ``guidance_scale``, ``seed``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec
import numpy as np

from warmgate.plugins.diffusion.loading import apply_optimizations, choose_device, pretrained_kwargs
from warmgate.plugins.live.pipelines import FrameProcessor

__all__ = ["DEFAULT_LIVE_MODEL", "DiffusionLiveParams", "DiffusionLiveProcessor"]

DEFAULT_LIVE_MODEL = "stabilityai/sd-turbo"


class DiffusionLiveParams(msgspec.Struct, kw_only=True):
    prompt: str = "a painting, vivid colours"
    strength: float = 0.5
    num_inference_steps: int = 2
    guidance_scale: float = 0.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if not 1 <= self.num_inference_steps <= 50 or int(self.num_inference_steps * self.strength) < 1:
            raise ValueError(f"num_inference_steps ({self.num_inference_steps}) x strength ({self.strength}) "
                             "must give at least one step, with at most 50 steps")


class _SharedPipeline:
    """One loaded pipeline per model, shared by the sessions using it; frames from several
    sessions take turns (a diffusers pipeline is not safe to call from two threads at once)."""

    def __init__(self, pipe: Any, device: str) -> None:
        self.pipe = pipe
        self.device = device
        self.users = 0
        self.lock = threading.Lock()


_loaded: dict[str, _SharedPipeline] = {}
_loading = threading.Lock()


def _acquire(model_id: str, options: dict[str, Any]) -> _SharedPipeline:
    with _loading:
        shared = _loaded.get(model_id)
        if shared is None:
            from diffusers import AutoPipelineForImage2Image

            device, dtype = choose_device(options, model_id)
            pipe = AutoPipelineForImage2Image.from_pretrained(model_id, **pretrained_kwargs(options, dtype))
            if getattr(pipe, "safety_checker", None) is not None:  # a live stream is not checked per frame
                pipe.safety_checker = None
            pipe.set_progress_bar_config(disable=True)
            shared = _loaded[model_id] = _SharedPipeline(apply_optimizations(pipe, options, device), device)
        shared.users += 1
        return shared


def _release(model_id: str) -> None:
    with _loading:
        shared = _loaded.get(model_id)
        if shared is not None:
            shared.users -= 1
            if shared.users <= 0:
                del _loaded[model_id]


def loaded_models() -> dict[str, int]:
    """Models in memory and how many sessions use each."""
    with _loading:
        return {model_id: shared.users for model_id, shared in _loaded.items()}


class DiffusionLiveProcessor(FrameProcessor):
    def __init__(self, *, model_id: str = DEFAULT_LIVE_MODEL, **options: Any) -> None:
        self.model_id = model_id
        self.options = options
        self._shared: _SharedPipeline | None = None
        self._params = DiffusionLiveParams()
        self._embeds: Any = None

    async def load_model(self, **params: Any) -> None:
        self._params = self._parse(params)
        self._shared = await asyncio.to_thread(_acquire, self.model_id, self.options)
        self._embeds = await asyncio.to_thread(self._encode_prompt, self._params.prompt)

    async def update_params(self, params: dict[str, Any]) -> None:
        parsed = self._parse(params)
        if parsed.prompt != self._params.prompt:
            self._embeds = await asyncio.to_thread(self._encode_prompt, parsed.prompt)
        self._params = parsed

    async def process_video(self, frame: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(self._generate, frame, self._params, self._embeds)

    async def stop(self) -> None:
        if self._shared is not None:
            self._shared = None
            await asyncio.to_thread(_release, self.model_id)

    @staticmethod
    def _parse(params: dict[str, Any]) -> DiffusionLiveParams:
        fields = {f.name for f in msgspec.structs.fields(DiffusionLiveParams)}
        try:
            return msgspec.convert({k: v for k, v in params.items() if k in fields}, DiffusionLiveParams)
        except msgspec.ValidationError as exc:
            raise ValueError(f"diffusion live params: {exc}") from None

    def _encode_prompt(self, prompt: str) -> Any:
        assert self._shared is not None
        with self._shared.lock:
            embeds, _ = self._shared.pipe.encode_prompt(prompt, self._shared.device, 1, False)
        return embeds

    def _generate(self, frame: np.ndarray, params: DiffusionLiveParams, embeds: Any) -> np.ndarray:
        import torch
        from PIL import Image

        assert self._shared is not None
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        with self._shared.lock, torch.inference_mode():
            out = self._shared.pipe(
                image=Image.fromarray(frame), prompt_embeds=embeds, strength=params.strength,
                num_inference_steps=params.num_inference_steps, guidance_scale=params.guidance_scale,
                generator=generator, output_type="np").images[0]
        image = (out * 255).round().clip(0, 255).astype(np.uint8)
        if image.shape != frame.shape:  # a model whose VAE rounds sizes: back to the stream's size
            image = np.asarray(Image.fromarray(image).resize((frame.shape[1], frame.shape[0])))
        return image
