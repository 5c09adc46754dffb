"""The NSFW flag on generated media: diffusers' ``StableDiffusionSafetyChecker``, taken from the
model's own ``safety_checker`` folder or from the function's ``safety_checker`` option.

It only flags; the pictures go back unchanged (diffusers' built-in check would black them out)."""

from __future__ import annotations

from typing import Any

__all__ = ["SafetyChecker", "load_safety_checker"]


class SafetyChecker:
    def __init__(self, model: Any, processor: Any, device: str) -> None:
        self.model, self.processor, self.device = model, processor, device

    def flags(self, images: list[Any]) -> list[bool]:
        import numpy as np
        import torch

        inputs = self.processor(images, return_tensors="pt")
        arrays = np.stack([np.asarray(image, dtype=np.float32) / 255.0 for image in images])
        with torch.no_grad():
            _, nsfw = self.model(clip_input=inputs.pixel_values.to(self.device, self.model.dtype), images=arrays)
        return [bool(flag) for flag in nsfw]


def load_safety_checker(pipe: Any, options: dict[str, Any], device: str) -> SafetyChecker | None:
    """The checker the function uses, or ``None`` (then every ``nsfw`` is false).

    The ``safety_checker`` option (a Hugging Face id or a local directory holding the checker and
    its image processor) wins; otherwise the checker the model ships, which is taken off the
    pipeline so diffusers does not black out flagged images."""
    own, processor = getattr(pipe, "safety_checker", None), getattr(pipe, "feature_extractor", None)
    if own is not None:
        pipe.safety_checker = None
    configured = options.get("safety_checker")
    if configured:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import AutoImageProcessor

        own = StableDiffusionSafetyChecker.from_pretrained(configured)
        processor = AutoImageProcessor.from_pretrained(configured)
    if own is None or processor is None:
        return None
    return SafetyChecker(own.to(device).eval(), processor, device)
