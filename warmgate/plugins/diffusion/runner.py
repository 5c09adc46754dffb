"""What every diffusion runner shares: one generation at a time per pipeline, seeds, prompt
splitting, LoRAs, step progress in the log, stopping at the next step when the client has gone,
the NSFW flag and out-of-memory recovery."""

from __future__ import annotations

import gc
import inspect
import random
import threading
import time
from typing import Any

import structlog

from warmgate.core.functions.cancel import current_cancellation, raise_if_cancelled
from warmgate.core.functions.spec import Runner, module_bytes
from warmgate.core.http.errors import ClientError, InferenceError
from warmgate.core.media import image_data_url
from warmgate.plugins.diffusion.loading import Family, family_of
from warmgate.plugins.diffusion.loras import LoraCache
from warmgate.plugins.diffusion.safety import load_safety_checker
from warmgate.plugins.diffusion.wire import ImageResponse, Media

__all__ = ["DiffusionRunner", "pick_seeds", "split_prompt"]

_log = structlog.get_logger("warmgate.diffusion")
MAX_PROMPT_PARTS = 3


def pick_seeds(seed: int | None, count: int) -> list[int]:
    """Image ``i`` uses ``seed + i``; no seed picks a random one (as the Livepeer runner does)."""
    first = random.randrange(2**32) if seed is None else seed
    return [first + i for i in range(count)]


def split_prompt(text: str, field: str, accepts: set[str]) -> dict[str, str]:
    """``a|b|c`` → ``prompt``, ``prompt_2``, ``prompt_3`` where the pipeline takes them (SDXL,
    SD3); a pipeline with one text encoder gets the text unchanged."""
    parts = [part.strip() for part in text.split("|")]
    if len(parts) == 1 or f"{field}_2" not in accepts:
        return {field: text}
    names = [field] + [f"{field}_{i}" for i in range(2, MAX_PROMPT_PARTS + 1) if f"{field}_{i}" in accepts]
    if len(parts) > len(names):
        raise ClientError(f"{field}: the model takes at most {len(names)} prompts separated by '|', got {len(parts)}")
    return dict(zip(names, parts, strict=False))


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class DiffusionRunner(Runner):
    """A loaded diffusers pipeline. Subclasses turn a request into call arguments and a response."""

    shrink_hint = "the requested size"
    """What to make smaller after an out-of-memory error."""

    def __init__(self, pipe: Any, model_id: str, options: dict[str, Any], device: str) -> None:
        self.pipe = pipe
        self.model_id = model_id
        self.device = device
        self.family: Family = family_of(model_id)
        self.accepts = set(inspect.signature(pipe.__call__).parameters)
        self.loras = LoraCache(pipe, int(options.get("max_loras", 8)))
        self.safety = load_safety_checker(pipe, options, device)
        self.progress_interval = float(options.get("progress_interval", 5.0))
        self.memory_bytes = module_bytes(*(c for c in getattr(pipe, "components", {}).values()
                                            if hasattr(c, "parameters") and hasattr(c, "buffers")))
        self.steps_done = 0
        """Denoising steps the current (or last) generation has finished: its observable progress."""
        self._lock = threading.Lock()  # diffusers pipelines keep per-call state (scheduler, adapters)

    def generate(self, kwargs: dict[str, Any], seeds: list[int], loras: dict[str, float] | None = None) -> Any:
        """Call the pipeline with the arguments it accepts, one generator per output."""
        import torch

        call = {k: v for k, v in kwargs.items() if k in self.accepts}
        call["generator"] = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        with self._lock:
            raise_if_cancelled("before the first step")  # it may have waited for the lock
            self.loras.activate(loras or {}, self.model_id)
            self._add_progress(call)
            started = time.perf_counter()
            try:
                output = self.pipe(**call)
            except ValueError as exc:  # diffusers' input checks: sizes, strength x steps, prompt lengths
                raise ClientError(f"{self.model_id} cannot run this request: {exc}") from None
            except (RuntimeError, MemoryError) as exc:
                if not (isinstance(exc, MemoryError) or _is_out_of_memory(exc)):
                    raise
                self._free_memory()
                raise InferenceError(f"out of memory in {self.model_id}; retry with {self.shrink_hint}") from None
        _log.info("diffusion_done", model_id=self.model_id, outputs=len(seeds),
                  seconds=round(time.perf_counter() - started, 3))
        return output

    def image_response(self, images: list[Any], seeds: list[int], safety_check: bool) -> ImageResponse:
        flags = self.flags(images, safety_check)
        return ImageResponse(images=[Media(url=image_data_url(image), seed=seed, nsfw=flag)
                                     for image, seed, flag in zip(images, seeds, flags, strict=True)])

    def flags(self, images: list[Any], safety_check: bool) -> list[bool]:
        """The NSFW flag per image; false everywhere when not asked for or no checker exists."""
        if not safety_check or self.safety is None:
            return [False] * len(images)
        with self._lock:
            return self.safety.flags(images)

    def close(self) -> None:
        self.pipe = None
        self.safety = None
        self._free_memory()

    def _add_progress(self, call: dict[str, Any]) -> None:
        """Count the steps, stop at the end of a step when the client has gone (raising from
        the callback skips the remaining steps and the VAE decode), and log the step count at
        most every ``progress_interval`` seconds (and the last step)."""
        state = {"last": time.perf_counter(), "logged": False}
        total = call.get("num_inference_steps")
        self.steps_done = 0

        def report(step: int) -> None:
            self.steps_done = step + 1
            if current_cancellation().cancelled:
                _log.info("diffusion_cancelled", model_id=self.model_id, step=step + 1, steps=total)
                raise_if_cancelled(f"after step {step + 1} of {total}")
            now = time.perf_counter()
            if now - state["last"] >= self.progress_interval or (state["logged"] and step + 1 == total):
                _log.info("diffusion_progress", model_id=self.model_id, step=step + 1, steps=total)
                state["last"], state["logged"] = now, True

        if "callback_on_step_end" in self.accepts:
            def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                report(step)
                return tensors

            call["callback_on_step_end"] = on_step_end
        elif "callback" in self.accepts:  # older pipelines (the x4 upscaler)
            call["callback"] = lambda step, timestep, latents: report(step)
            call["callback_steps"] = 1

    def _free_memory(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
