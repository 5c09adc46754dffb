"""``POST /image-to-image``: an uploaded image and a prompt in, PNG data URLs out."""

from __future__ import annotations

from typing import Any

from warmgate.core.media import ImageInput
from warmgate.plugins.diffusion.loading import apply_optimizations, choose_device, pretrained_kwargs
from warmgate.plugins.diffusion.loras import parse_loras
from warmgate.plugins.diffusion.runner import DiffusionRunner, pick_seeds, split_prompt
from warmgate.plugins.diffusion.wire import ImageResponse, ImageToImageParams

__all__ = ["ImageToImageRunner", "load_image_to_image"]


class ImageToImageRunner(DiffusionRunner):
    shrink_hint = "a smaller input image or fewer num_images_per_prompt"

    def __call__(self, request: ImageInput) -> ImageResponse:
        params: ImageToImageParams = request.params
        loras = parse_loras(params.loras)
        seeds = pick_seeds(params.seed, params.num_images_per_prompt)
        kwargs: dict[str, Any] = {
            **split_prompt(params.prompt, "prompt", self.accepts),
            "image": request.image, "strength": params.strength,
            "guidance_scale": params.guidance_scale if self.family.guidance_scale is None else self.family.guidance_scale,
            "image_guidance_scale": params.image_guidance_scale,
            "num_inference_steps": params.num_inference_steps,
            "num_images_per_prompt": params.num_images_per_prompt,
        }
        if params.negative_prompt and self.family.negative_prompt:
            kwargs.update(split_prompt(params.negative_prompt, "negative_prompt", self.accepts))
        # one image per call: InstructPix2Pix batches one input image against n prompts only
        # through a deprecated path, and single images bound the memory a request can take
        kwargs["num_images_per_prompt"] = 1
        images = [image for seed in seeds for image in self.generate(kwargs, [seed], loras).images]
        return self.image_response(images, seeds, params.safety_check)


def load_image_to_image(model_id: str, options: dict[str, Any]) -> ImageToImageRunner:
    """InstructPix2Pix models (by their ``model_index.json`` class) with Euler ancestral
    sampling; anything else through ``AutoPipelineForImage2Image``."""
    from diffusers import (
        AutoPipelineForImage2Image,
        DiffusionPipeline,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
    )

    device, dtype = choose_device(options)
    kwargs = pretrained_kwargs(options, dtype)
    if "InstructPix2Pix" in DiffusionPipeline.load_config(model_id).get("_class_name", ""):
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model_id, **kwargs)
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    else:
        pipe = AutoPipelineForImage2Image.from_pretrained(model_id, **kwargs)
    served = options.get("served_model_id", model_id)
    return ImageToImageRunner(apply_optimizations(pipe, options, device), served, options, device)
