"""``POST /image-to-video``: an uploaded image in, an H.264 mp4 (or the runner's PNG frames) out."""

from __future__ import annotations

from typing import Any

from warmgate.core.http.errors import ConfigError
from warmgate.core.media import ImageInput, data_url, encode_mp4, image_data_url
from warmgate.plugins.diffusion.loading import apply_optimizations, choose_device, pretrained_kwargs
from warmgate.plugins.diffusion.runner import DiffusionRunner, pick_seeds
from warmgate.plugins.diffusion.wire import ImageToVideoParams, Media, RunnerVideoResponse, VideoResponse

__all__ = ["ImageToVideoRunner", "load_image_to_video"]

VIDEO_OUTPUTS = ("mp4", "frames")


class ImageToVideoRunner(DiffusionRunner):
    shrink_hint = "a smaller width x height (or a smaller decode_chunk_size in the function options)"

    def __init__(self, pipe: Any, model_id: str, options: dict[str, Any], device: str) -> None:
        super().__init__(pipe, model_id, options, device)
        self.output = options.get("video_output", "mp4")
        if self.output not in VIDEO_OUTPUTS:
            raise ConfigError("image-to-video function options", "video_output",
                              f"one of {', '.join(VIDEO_OUTPUTS)}, got {self.output!r}")
        self.extra = {k: int(options[k]) for k in ("num_frames", "decode_chunk_size") if k in options}

    def __call__(self, request: ImageInput) -> VideoResponse | RunnerVideoResponse:
        params: ImageToVideoParams = request.params
        [seed] = pick_seeds(params.seed, 1)
        # SVD resizes the image to width x height for its latents itself; resizing first also
        # spares its CLIP branch a tiny or thin input, which its antialiasing pad cannot take
        image = request.image.resize((params.width, params.height))
        kwargs = {"image": image, "height": params.height, "width": params.width, "fps": params.fps,
                  "motion_bucket_id": params.motion_bucket_id, "noise_aug_strength": params.noise_aug_strength,
                  "num_inference_steps": params.num_inference_steps, **self.extra}
        frames = self.generate(kwargs, [seed]).frames[0]
        nsfw = any(self.flags(frames, params.safety_check))
        if self.output == "frames":
            return RunnerVideoResponse(frames=[[Media(url=image_data_url(frame), seed=seed, nsfw=nsfw)
                                                for frame in frames]])
        video = data_url(encode_mp4(frames, params.fps), "video/mp4")
        return VideoResponse(images=[Media(url=video, seed=seed, nsfw=nsfw)])


def load_image_to_video(model_id: str, options: dict[str, Any]) -> ImageToVideoRunner:
    from diffusers import DiffusionPipeline

    device, dtype = choose_device(options)
    pipe = DiffusionPipeline.from_pretrained(model_id, **pretrained_kwargs(options, dtype))
    served = options.get("served_model_id", model_id)
    return ImageToVideoRunner(apply_optimizations(pipe, options, device), served, options, device)
