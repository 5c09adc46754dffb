"""Small pipelines that exercise every core path without a model: JSON, multipart, streaming,
slow and failing loads."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from warmgate.core.functions.spec import DemoModel, File, PipelineSpec, PriceUnit, Runner

__all__ = ["EchoPipeline", "EchoRequest", "EchoResponse", "MockRunner", "UploadRequest", "UploadResponse",
           "mock_pipeline", "upload_pipeline"]


class EchoRequest(msgspec.Struct, kw_only=True):
    """Text to echo back."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, description="Text to echo.")]
    model_id: str = ""
    repeat: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    sleep: Annotated[float, msgspec.Meta(ge=0, le=30)] = 0.0
    """Seconds the runner blocks, to hold a slot."""
    fail: bool = False
    """Make the runner raise, to test inference errors."""
    stream: bool = False
    """Return the words one by one as server-sent events."""
    interval: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0
    """Seconds between streamed words, to keep a stream open or an answer half sent."""


class EchoResponse(msgspec.Struct):
    text: str
    model_id: str


class UploadRequest(msgspec.Struct, kw_only=True):
    image: File
    prompt: str
    model_id: str = ""
    seed: int | None = None
    strength: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5


class UploadResponse(msgspec.Struct):
    filename: str
    content_type: str
    size: int
    prompt: str
    seed: int | None
    strength: float


class _EchoRunner(Runner):
    def __init__(self, model_id: str, closed: list[str]) -> None:
        self.model_id = model_id
        self._closed = closed

    def __call__(self, request: EchoRequest) -> Any:
        if request.sleep:
            time.sleep(request.sleep)
        if request.fail:
            raise RuntimeError("echo was asked to fail")
        text = " ".join([request.prompt] * request.repeat)
        if request.stream:
            return self._events(text, request.interval)
        return EchoResponse(text=text, model_id=self.model_id)

    def _events(self, text: str, interval: float) -> Iterator[str]:
        for n, word in enumerate(text.split()):
            if n and interval:
                time.sleep(interval)
            yield f"data: {msgspec.json.encode({'delta': word}).decode()}\n\n"
        yield "data: [DONE]\n\n"

    def close(self) -> None:
        self._closed.append(self.model_id)


class EchoPipeline:
    """An ``echo`` pipeline whose loads are counted and can be slowed or made to fail.

    Loader options (``FunctionConfig.options``): ``load_delay`` seconds, ``fail_loads`` (fail the
    first N loads), ``memory_bytes`` (what the runner reports to the memory budget).
    """

    def __init__(self, name: str = "echo", *, default_model_id: str = "echo-1", paths: tuple[str, ...] = ()) -> None:
        self.loads = 0
        self.load_calls = 0
        self.closed: list[str] = []
        self._lock = threading.Lock()
        self.spec = PipelineSpec(
            name=name, request=EchoRequest, response=EchoResponse, load=self.load,
            default_model_id=default_model_id, paths=paths, price_unit=PriceUnit.CHARACTER, units=_characters,
            summary="Echo", description="Echoes the prompt back (a test pipeline).",
            demo=DemoModel(model_id=f"warmgate-demo/{name}", build=_write_demo_model),
        )

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (a ray replica gets the spec, and this with it): without the lock."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def load(self, model_id: str, options: dict[str, Any]) -> Runner:
        with self._lock:
            self.load_calls += 1
            attempt = self.load_calls
        time.sleep(float(options.get("load_delay", 0)))
        if attempt <= int(options.get("fail_loads", 0)):
            raise OSError(f"weights for {model_id} are unreadable (attempt {attempt})")
        runner = _EchoRunner(model_id, self.closed)
        if "memory_bytes" in options:
            runner.memory_bytes = int(options["memory_bytes"])
        with self._lock:
            self.loads += 1
        return runner


def _characters(request: EchoRequest) -> int:
    return len(request.prompt)


def _write_demo_model(directory: Any) -> None:
    (directory / "config.json").write_text('{"model_type": "echo"}')


class MockRunner(Runner):
    """Returns queued responses in order (``enqueue``) and records every request (``history``)."""

    def __init__(self, default: Any = None) -> None:
        self.default = default
        self.history: list[Any] = []
        self._queue: deque[Any] = deque()

    def enqueue(self, *responses: Any) -> None:
        self._queue.extend(responses)

    def __call__(self, request: Any) -> Any:
        self.history.append(request)
        response = self._queue.popleft() if self._queue else self.default
        if isinstance(response, BaseException):
            raise response
        return response


def mock_pipeline(name: str, runner: MockRunner, *, request: type = EchoRequest, response: type = EchoResponse,
                  encoding: str = "json", **spec_fields: Any) -> PipelineSpec:
    """A pipeline served by ``runner`` (every load returns the same MockRunner)."""
    return PipelineSpec(name=name, request=request, response=response, load=lambda model_id, options: runner,
                        default_model_id=f"{name}-mock", encoding=encoding, **spec_fields)  # type: ignore[arg-type]


class _UploadRunner(Runner):
    def __call__(self, request: UploadRequest) -> UploadResponse:
        return UploadResponse(filename=request.image.filename, content_type=request.image.content_type,
                              size=len(request.image.data), prompt=request.prompt, seed=request.seed,
                              strength=request.strength)


def upload_pipeline(name: str = "upload") -> PipelineSpec:
    """A multipart pipeline that describes the file it was sent (forwarding keeps files intact)."""
    return PipelineSpec(name=name, request=UploadRequest, response=UploadResponse,
                        load=lambda model_id, options: _UploadRunner(), default_model_id="upload-1",
                        encoding="multipart", summary="Upload", description="Describes an uploaded file.")
