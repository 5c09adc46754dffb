"""``POST /text-to-image``: a prompt in, PNG data URLs out."""

from __future__ import annotations

from typing import Any

from warmgate.plugins.diffusion.loading import (
    apply_optimizations,
    choose_device,
    family_of,
    lightning_scheduler,
    load_lightning,
    pretrained_kwargs,
)
from warmgate.plugins.diffusion.loras import parse_loras
from warmgate.plugins.diffusion.runner import DiffusionRunner, pick_seeds, split_prompt
from warmgate.plugins.diffusion.wire import ImageResponse, TextToImageParams

__all__ = ["TextToImageRunner", "load_text_to_image"]


class TextToImageRunner(DiffusionRunner):
    shrink_hint = "a smaller width x height or fewer num_images_per_prompt"

    def __call__(self, request: TextToImageParams) -> ImageResponse:
        loras = parse_loras(request.loras)
        seeds = pick_seeds(request.seed, request.num_images_per_prompt)
        family = self.family
        kwargs: dict[str, Any] = {
            **split_prompt(request.prompt, "prompt", self.accepts),
            "height": request.height, "width": request.width,
            "guidance_scale": request.guidance_scale if family.guidance_scale is None else family.guidance_scale,
            "num_inference_steps": family.steps or request.num_inference_steps,
            "num_images_per_prompt": request.num_images_per_prompt,
        }
        if request.negative_prompt and family.negative_prompt:
            kwargs.update(split_prompt(request.negative_prompt, "negative_prompt", self.accepts))
        images = self.generate(kwargs, seeds, loras).images
        return self.image_response(images, seeds, request.safety_check)


def load_text_to_image(model_id: str, options: dict[str, Any]) -> TextToImageRunner:
    """``AutoPipelineForText2Image`` for SD, SDXL, SD3, FLUX and the turbo models; SDXL-Lightning
    gets its n-step UNet on the SDXL base and trailing Euler timesteps."""
    from diffusers import AutoPipelineForText2Image

    served = options.get("served_model_id", model_id)
    device, dtype = choose_device(options, served)
    family = family_of(served)
    if family.name == "sdxl-lightning":
        pipe = load_lightning(model_id, options, dtype)
    else:
        pipe = AutoPipelineForText2Image.from_pretrained(model_id, **pretrained_kwargs(options, dtype))
        if family.name == "lightning":
            lightning_scheduler(pipe)
    return TextToImageRunner(apply_optimizations(pipe, options, device), served, options, device)
