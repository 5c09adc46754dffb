"""``POST /upscale``: an uploaded image in, the same picture at four times the size out."""

from __future__ import annotations

from typing import Any

from warmgate.core.media import ImageInput
from warmgate.plugins.diffusion.loading import apply_optimizations, choose_device, pretrained_kwargs
from warmgate.plugins.diffusion.runner import DiffusionRunner, pick_seeds
from warmgate.plugins.diffusion.wire import ImageResponse, UpscaleParams

__all__ = ["UpscaleRunner", "load_upscale"]


class UpscaleRunner(DiffusionRunner):
    shrink_hint = "a smaller input image"

    def __call__(self, request: ImageInput) -> ImageResponse:
        params: UpscaleParams = request.params
        seeds = pick_seeds(params.seed, 1)
        kwargs = {"prompt": params.prompt, "image": request.image, "num_inference_steps": params.num_inference_steps}
        images = self.generate(kwargs, seeds).images
        return self.image_response(images, seeds, params.safety_check)


def load_upscale(model_id: str, options: dict[str, Any]) -> UpscaleRunner:
    from diffusers import DiffusionPipeline

    device, dtype = choose_device(options)
    pipe = DiffusionPipeline.from_pretrained(model_id, **pretrained_kwargs(options, dtype))
    served = options.get("served_model_id", model_id)
    return UpscaleRunner(apply_optimizations(pipe, options, device), served, options, device)
