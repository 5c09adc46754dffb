"""Media in and out of pipelines: uploaded images decoded safely, results as data URLs, frames
as H.264 mp4. Pillow and PyAV are imported on first use, so the gateway starts without them."""

from __future__ import annotations

import base64
import io
import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warmgate.core.functions.spec import File, PriceUnit, SpecBase
from warmgate.core.http.errors import ClientError, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "DEFAULT_MAX_AUDIO_SECONDS",
    "DEFAULT_MAX_INPUT_PIXELS",
    "AudioInput",
    "ImageInput",
    "data_url",
    "decode_audio",
    "decode_image",
    "encode_mp4",
    "encode_wav",
    "image_data_url",
    "max_audio_seconds",
    "prepare_audio_input",
    "IMAGE_INPUT",
    "input_pixels",
    "prepare_image_input",
]

AUDIO_SAMPLE_RATE = 16_000
"""Speech models (Whisper) take 16 kHz mono float32."""
UNSUPPORTED_AUDIO = "Unsupported audio format or malformed file."
DEFAULT_MAX_AUDIO_SECONDS = 3600.0
"""Longest uploaded audio accepted unless a function configures another (``max_audio_seconds``):
a 50 MB body of low-bitrate audio could otherwise decode to gigabytes of samples."""

DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
"""Largest uploaded image (width x height) accepted unless a function configures another."""


def decode_image(upload: File, *, field: str = "image", max_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
                 min_side: int = 1) -> Image:
    """An upload as an RGB Pillow image, upright per its EXIF orientation.

    The size is read from the header and checked against ``max_pixels`` before any pixel is
    decoded, so a decompression bomb costs nothing. Not an image → 415; truncated → 400; too
    many pixels → 413; a side shorter than ``min_side`` (what the model can work on) → 400.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not upload.data:
        raise ClientError(f"{field}: the uploaded file is empty")
    with warnings.catch_warnings():
        # warmgate enforces its own pixel limit below; Pillow's bomb warning would only be noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(upload.data))
        except UnidentifiedImageError:
            raise UnsupportedMediaType(f"{field}: {_describe_upload(upload)} is not an image Pillow can decode "
                                       f"(PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from None
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"{field}: {exc}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(f"{field}: {width}x{height} is {width * height} pixels; "
                                  f"this function accepts at most {max_pixels}")
        if min(width, height) < min_side:
            raise ClientError(f"{field}: {width}x{height} is too small; this function needs at least "
                              f"{min_side} pixels on each side")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ClientError(f"{field}: the image is truncated or corrupt: {exc}") from None
    image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class ImageInput:
    """A validated request whose ``image`` upload is decoded (a spec's ``prepare`` result)."""

    params: Any
    image: Any
    """RGB ``PIL.Image``."""
    outputs: int = 1
    """Results per input pixel, for the price: images, or video frames."""


def prepare_image_input(params: Any, options: dict[str, Any], *, min_side: int = 1) -> ImageInput:
    """``PipelineSpec.prepare`` for requests with an ``image`` upload: decoded before a function
    is acquired, limited by the function's ``max_input_pixels`` option and ``min_side``."""
    image = decode_image(params.image, max_pixels=int(options.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS)),
                         min_side=min_side)
    return ImageInput(params, image, getattr(params, "num_images_per_prompt", 1))


def input_pixels(request: Any) -> int:
    """Billed pixels of an image-input request: the input's width x height x its outputs."""
    width, height = request.image.size
    return width * height * getattr(request, "outputs", 1)


IMAGE_INPUT = SpecBase(encoding="multipart", prepare=prepare_image_input, price_unit=PriceUnit.PIXEL,
                       units=input_pixels)
"""The base of pipelines that take an ``image`` upload, priced per input pixel."""


def decode_audio(upload: File, *, field: str = "audio", rate: int = AUDIO_SAMPLE_RATE,
                 max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> Any:
    """An upload (mp3, wav, flac, ogg, webm, mp4/m4a, ... anything FFmpeg reads) as mono float32
    samples at ``rate`` Hz, decoded and resampled with PyAV: no ffmpeg binary needed.

    Not audio, undecodable, or no audio stream → 415; an empty file or no samples → 400; longer
    than ``max_seconds`` → 413, from the container's duration before decoding when it states
    one, else as soon as the decoded samples pass it.
    """
    import av
    import numpy as np

    if not upload.data:
        raise ClientError(f"{field}: the uploaded file is empty")
    chunks = []
    limit = int(max_seconds * rate)
    decoded = 0
    try:
        with av.open(io.BytesIO(upload.data), mode="r") as container:
            if not container.streams.audio:
                raise UnsupportedMediaType(f"{UNSUPPORTED_AUDIO} ({field}: {_describe_upload(upload)} has no audio stream)")
            _check_duration(field, _stated_seconds(container), max_seconds)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in itertools.chain(container.decode(audio=0), [None]):  # None flushes
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    decoded += chunks[-1].size
                    if decoded > limit:
                        _check_duration(field, decoded / rate, max_seconds)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise UnsupportedMediaType(f"{UNSUPPORTED_AUDIO} ({field}: {_describe_upload(upload)}: {reason})") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise ClientError(f"{field}: the audio has no samples (zero length)")
    return samples.astype(np.float32, copy=False)


def _stated_seconds(container: Any) -> float | None:
    """The duration the container's header states (no packet read), or ``None``."""
    import av

    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None


def _check_duration(field: str, seconds: float | None, max_seconds: float) -> None:
    if seconds is not None and seconds > max_seconds:
        raise PayloadTooLarge(f"{field}: the audio is {seconds:.1f} s long; this function accepts at most "
                              f"{max_seconds:g} s")


@dataclass(frozen=True)
class AudioInput:
    """A validated request whose ``audio`` upload is decoded (a spec's ``prepare`` result)."""

    params: Any
    samples: Any
    """Mono float32 numpy array at ``AUDIO_SAMPLE_RATE``."""

    @property
    def duration_ms(self) -> int:
        return round(len(self.samples) * 1000 / AUDIO_SAMPLE_RATE)


def prepare_audio_input(params: Any, options: dict[str, Any]) -> AudioInput:
    """``PipelineSpec.prepare`` for requests with an ``audio`` upload."""
    return AudioInput(params, decode_audio(params.audio, max_seconds=max_audio_seconds(options)))


def max_audio_seconds(options: dict[str, Any]) -> float:
    """The function's ``max_audio_seconds`` option (default ``DEFAULT_MAX_AUDIO_SECONDS``)."""
    return float(options.get("max_audio_seconds", DEFAULT_MAX_AUDIO_SECONDS))


def _describe_upload(upload: File) -> str:
    name = f"{upload.filename!r}" if upload.filename else "the upload"
    return f"{name} ({upload.content_type})" if upload.content_type else name


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_url(image: Image, *, fmt: str = "PNG") -> str:
    """``data:image/png;base64,...`` as the Livepeer runner returns images."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return data_url(buffer.getvalue(), f"image/{fmt.lower()}")


def encode_wav(samples: Any, rate: int) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file (clipped, not rescaled)."""
    import wave

    import numpy as np

    pcm = (np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def encode_mp4(frames: Sequence[Image], fps: int, *, crf: int = 18) -> bytes:
    """Frames as an H.264 (yuv420p) mp4 at ``fps``, playable in browsers.

    yuv420p needs even dimensions, so an odd width or height loses its last pixel column/row.
    """
    import av

    if not frames:
        raise ValueError("no frames to encode")
    width, height = frames[0].size
    width, height = width - width % 2, height - height % 2
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            picture = frame.convert("RGB")
            if picture.size != (width, height):
                picture = picture.crop((0, 0, width, height))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
