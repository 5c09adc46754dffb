"""``POST /image-to-text``: a caption for an uploaded image (conditional when a prompt is given)."""

from __future__ import annotations

import threading
from typing import Any

from warmgate.core.functions.spec import Runner, module_bytes
from warmgate.core.media import ImageInput
from warmgate.plugins.vision.wire import ImageToTextParams, ImageToTextResponse

__all__ = ["ImageToTextRunner", "load_image_to_text"]


class ImageToTextRunner(Runner):
    def __init__(self, model: Any, processor: Any, device: str, max_new_tokens: int) -> None:
        self.model, self.processor, self.device = model, processor, device
        self.max_new_tokens = max_new_tokens
        self.memory_bytes = module_bytes(model)
        self._lock = threading.Lock()

    def __call__(self, request: ImageInput) -> ImageToTextResponse:
        import torch

        params: ImageToTextParams = request.params
        inputs = self.processor(images=request.image, text=params.prompt or None, return_tensors="pt")
        inputs = inputs.to(self.device, self.model.dtype)
        with self._lock, torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return ImageToTextResponse(text=self.processor.decode(output[0], skip_special_tokens=True).strip())

    def close(self) -> None:
        self.model = self.processor = None


def load_image_to_text(model_id: str, options: dict[str, Any]) -> ImageToTextRunner:
    """Any image-text-to-text model transformers' auto classes load (BLIP by default); options
    ``device``, ``torch_dtype`` and ``max_new_tokens`` (default 50)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, options.get("torch_dtype") or ("float32" if device == "cpu" else "float16"))
    processor = AutoProcessor.from_pretrained(model_id)
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype).to(device).eval()
    return ImageToTextRunner(model, processor, device, int(options.get("max_new_tokens", 50)))
