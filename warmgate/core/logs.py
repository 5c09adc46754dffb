"""structlog set-up: JSON lines when stderr is not a terminal, the request id on every line; the
standard library's logging, ``warnings`` and the model libraries' own loggers go the same way,
and progress bars only to a terminal."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import os
import sys
from typing import Any

import msgspec
import structlog

from warmgate.core.context import request_context

__all__ = ["AccessLog", "configure_logging", "json_lines", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("warmgate_request_id", default=None)
"""The id of the request being served; set by the request middleware, copied into worker threads."""


def _add_request_id(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
        context = request_context.get()
        if context is not None and context.trace is not None:
            event.setdefault("trace_id", f"{context.trace.trace_id:032x}")
    return event


_encoder = msgspec.json.Encoder(enc_hook=repr)


def _dumps(event: dict[str, Any], **_: Any) -> str:
    return _encoder.encode(event).decode()


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now, not what it was when logging was configured
    (loggers are cached, and test runners or daemons swap the stream)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def json_lines(fmt: str) -> bool:
    """Whether logs are JSON lines: ``json``, or ``auto`` with stderr not a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and the standard library (uvicorn, litestar) through one renderer.

    ``request_id_var`` carries the request id, which the request middleware sets, so every line
    logged while serving a request (including from worker threads) names it.
    """
    as_json = json_lines(fmt)
    renderer: Any = structlog.processors.JSONRenderer(_dumps) if as_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer] if as_json
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([structlog.processors.format_exc_info] if as_json else []), renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn (torch, transformers...) become log lines too
    _route_library_loggers()
    if as_json or not sys.stderr.isatty():
        _disable_progress_bars()
    for name in ("uvicorn", "uvicorn.error", "litestar"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # warmgate logs each request itself
    # httpx logs every request at INFO; relaying to engines that is a line per request, at a
    # cost the relay cannot afford. Its warnings and errors still come through.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


_LIBRARIES = ("transformers", "diffusers", "huggingface_hub", "accelerate", "torch")
"""Libraries whose top logger gets a stderr handler of its own (and stops propagating) when they
are imported, which is after logging is configured: warmgate imports them when a model loads."""


class _RoutedLogger(logging.Logger):
    """A library's top logger that refuses the plain stderr handler the library adds to it on
    import and always propagates, so the library's lines reach the root handler (one format,
    JSON when logs are JSON) whenever the library is imported."""

    def addHandler(self, hdlr: logging.Handler) -> None:
        if type(hdlr) is not logging.StreamHandler:  # the library's own console handler is exactly that
            super().addHandler(hdlr)

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        return True

    @propagate.setter
    def propagate(self, value: bool) -> None:
        """Ignored: the library turns propagation off along with adding its handler."""


def _route_library_loggers() -> None:
    manager = logging.Logger.manager
    for name in _LIBRARIES:
        existing = manager.loggerDict.get(name)
        if isinstance(existing, logging.Logger):  # imported already: undo its set-up
            existing.handlers[:] = [h for h in existing.handlers if type(h) is not logging.StreamHandler]
            existing.propagate = True
            continue
        saved = manager.loggerClass
        manager.setLoggerClass(_RoutedLogger)  # getLogger also adopts the children already created
        try:
            logging.getLogger(name)
        finally:
            manager.loggerClass = saved


def _disable_progress_bars() -> None:
    """tqdm bars (model downloads, pipeline loading, denoising steps) are for a terminal; in a
    log they are carriage-return garbage between JSON lines. The variables reach tqdm and
    huggingface_hub when they are imported; already imported, huggingface_hub is told directly."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None:
        hub.disable_progress_bars()


class AccessLog:
    """One line per request, written cheaply enough to leave on under load.

    Going through structlog's processor chain and one unbuffered write per line cost more CPU
    than the rest of the gateway's per-request work together. In JSON mode the lines that
    finish in the same event-loop turn are therefore encoded with msgspec and written with one
    ``write`` at the end of that turn; they have the same fields as every other JSON line.
    In console mode (a terminal, a person reading) each line goes through structlog.
    """

    def __init__(self, json_lines: bool, stream: Any = None) -> None:
        self._json = json_lines
        self._stream = stream  # None: whatever sys.stderr is when the lines are written
        self._lines: list[bytes] = []
        self._log = structlog.get_logger("warmgate.access")

    def __call__(self, method: str, path: str, status: int, ms: float, request_id: str,
                 fields: dict[str, Any] | None = None) -> None:
        if not self._json:
            self._log.info("request", method=method, path=path, status=status, ms=ms, **(fields or {}))
            return
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        line = {"method": method, "path": path, "status": status, "ms": ms, "event": "request",
                "request_id": request_id, "level": "info", "timestamp": now[:-6] + "Z"}
        if fields:
            line.update(fields)
        self._lines.append(_encoder.encode(line))
        if len(self._lines) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if self._lines:
            data = b"\n".join(self._lines) + b"\n"
            self._lines.clear()
            stream = self._stream or sys.stderr
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                stream.flush()
                buffer.write(data)
                buffer.flush()
            else:
                stream.write(data.decode())
                stream.flush()
