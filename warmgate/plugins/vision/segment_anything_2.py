"""``POST /segment-anything-2``: masks for point and box prompts with transformers' ``Sam2Model``.

Pre- and post-processing are done here with Pillow and torch, not with ``Sam2Processor``:
that processor imports torchvision unconditionally, and no torchvision build installs beside
the torch CPU wheel this project pins. The steps are SAM 2's own: the image squashed to the
model's square input size, ImageNet normalisation, prompts scaled to that size, and the
low-resolution mask logits upsampled bilinearly back to the image size."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from warmgate.core.functions.spec import Runner, module_bytes
from warmgate.core.http.decode import json_field
from warmgate.core.http.errors import ClientError
from warmgate.core.media import DEFAULT_MAX_INPUT_PIXELS, decode_image
from warmgate.plugins.vision.wire import MasksResponse, SegmentAnything2Params

__all__ = ["SegmentationRequest", "SegmentAnything2Runner", "load_segment_anything_2", "prepare_segmentation"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SegmentationRequest:
    params: SegmentAnything2Params
    image: Any
    """RGB ``PIL.Image``."""
    points: list[list[float]] | None
    labels: list[int] | None
    box: list[float] | None
    mask: list[list[list[float]]] | None


def _json_array(field: str, text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    return json_field(field, text, "a JSON array")


def _numbers(field: str, value: Any, shape: str) -> None:
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ClientError(f"{field}: expected {shape} of numbers, got {value!r}")


def prepare_segmentation(params: SegmentAnything2Params, options: dict[str, Any]) -> SegmentationRequest:
    """Prompts parsed and checked (400 naming the field) and the image decoded, before a
    function is acquired."""
    points = _json_array("point_coords", params.point_coords)
    labels = _json_array("point_labels", params.point_labels)
    box = _json_array("box", params.box)
    mask = _json_array("mask_input", params.mask_input)
    if points is not None:
        if not isinstance(points, list) or not points or not all(isinstance(p, list) and len(p) == 2 for p in points):
            raise ClientError(f"point_coords: expected an Nx2 array like [[x, y], ...], got {params.point_coords!r}")
        _numbers("point_coords", [v for p in points for v in p], "an Nx2 array")
        if labels is None:
            raise ClientError("point_labels: required with point_coords (1 foreground, 0 background per point)")
    if labels is not None:
        if points is None:
            raise ClientError("point_labels: given without point_coords")
        if not isinstance(labels, list) or len(labels) != len(points) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in labels):
            raise ClientError(f"point_labels: expected {len(points)} integer labels, one per point, got {params.point_labels!r}")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise ClientError(f"box: expected [x1, y1, x2, y2], got {params.box!r}")
        _numbers("box", box, "[x1, y1, x2, y2]")
    if points is None and box is None:
        raise ClientError("no prompt: give point_coords with point_labels, or a box")
    if mask is not None and not (isinstance(mask, list) and len(mask) == 1 and isinstance(mask[0], list)
                                 and mask[0] and all(isinstance(row, list) for row in mask[0])):
        raise ClientError("mask_input: expected a 1xHxW array")
    image = decode_image(params.image, max_pixels=int(options.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS)))
    return SegmentationRequest(params, image, points, labels, box, mask)


class SegmentAnything2Runner(Runner):
    def __init__(self, model: Any, device: str) -> None:
        self.model, self.device = model, device
        self.size = int(model.config.vision_config.backbone_config.image_size)
        self.mask_size = int(model.config.prompt_encoder_config.image_size) // 4
        self.memory_bytes = module_bytes(model)
        self._lock = threading.Lock()

    def __call__(self, request: SegmentationRequest) -> MasksResponse:
        import numpy as np
        import torch

        params = request.params
        width, height = request.image.size
        inputs: dict[str, Any] = {"pixel_values": self._pixels(request.image)}
        scale = np.array([self.size, self.size], dtype=np.float32)
        if params.normalize_coords:  # pixel coordinates of the image -> [0, 1]
            scale = scale / np.array([width, height], dtype=np.float32)
        if request.points is not None:
            points = np.asarray(request.points, dtype=np.float32) * scale
            inputs["input_points"] = torch.tensor(points).reshape(1, 1, -1, 2)
            inputs["input_labels"] = torch.tensor(request.labels).reshape(1, 1, -1)
        if request.box is not None:
            box = np.asarray(request.box, dtype=np.float32).reshape(2, 2) * scale
            inputs["input_boxes"] = torch.tensor(box).reshape(1, 1, 4)
        if request.mask is not None:
            mask = np.asarray(request.mask, dtype=np.float32)
            if mask.shape != (1, self.mask_size, self.mask_size):
                raise ClientError(f"mask_input: this model takes 1x{self.mask_size}x{self.mask_size}, got "
                                  f"{'x'.join(map(str, mask.shape))}")
            inputs["input_masks"] = torch.tensor(mask).reshape(1, 1, self.mask_size, self.mask_size)
        with self._lock, torch.no_grad():
            output = self.model(**{k: v.to(self.device) for k, v in inputs.items()},
                                multimask_output=params.multimask_output)
        logits = output.pred_masks[0, 0].float()  # (C, low, low)
        scores = output.iou_scores[0, 0].float()
        order = torch.argsort(scores, descending=True)
        logits, scores = logits[order], scores[order]
        full = torch.nn.functional.interpolate(logits[None], size=(self.size, self.size), mode="bilinear",
                                               align_corners=False)
        full = torch.nn.functional.interpolate(full, size=(height, width), mode="bilinear", align_corners=False)[0]
        masks = full if params.return_logits else full > 0
        return MasksResponse(masks=_as_text(masks), scores=_as_text(scores), logits=_as_text(logits))

    def _pixels(self, image: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        resized = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        array = (np.asarray(resized, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.tensor(array, dtype=self.model.dtype).permute(2, 0, 1)[None]

    def close(self) -> None:
        self.model = None


def _as_text(tensor: Any) -> str:
    """A nested list in Python's literal syntax, as the runner sends arrays (``str(a.tolist())``),
    written by msgspec: six times faster on mask-sized arrays. Floats use the shortest round-trip
    digits without exponents, which ``ast.literal_eval`` and ``json.loads`` read back exactly."""
    text = msgspec.json.encode(tensor.cpu().numpy().tolist()).replace(b",", b", ")
    if tensor.dtype.is_floating_point:
        return text.decode()
    return text.replace(b"true", b"True").replace(b"false", b"False").decode()


def load_segment_anything_2(model_id: str, options: dict[str, Any]) -> SegmentAnything2Runner:
    """``Sam2Model`` (transformers format); options ``device`` and ``torch_dtype``."""
    import torch
    from transformers import Sam2Model

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, options.get("torch_dtype") or "float32")
    return SegmentAnything2Runner(Sam2Model.from_pretrained(model_id, dtype=dtype).to(device).eval(), device)
