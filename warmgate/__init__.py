"""warmgate: an LLM-first, serverless AI gateway speaking the Livepeer AI API and OpenAI chat."""

from warmgate.core.app import create_app
from warmgate.core.auth import Caller
from warmgate.core.cancel import RequestCancelled, current_cancellation, raise_if_cancelled
from warmgate.core.config import load_settings
from warmgate.core.context import RequestContext, current_request
from warmgate.core.errors import (
    CapacityError,
    ClientDisconnected,
    ClientError,
    ConfigError,
    InferenceError,
    LoadError,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    RequestValidationError,
    Unauthorized,
    UnsupportedMediaType,
    WarmgateError,
)
from warmgate.core.executors import BaseExecutor, Executor
from warmgate.core.functions import FunctionState
from warmgate.core.hookspecs import hookimpl
from warmgate.core.live import FrameProcessor
from warmgate.core.media import (
    IMAGE_INPUT,
    data_url,
    decode_audio,
    decode_image,
    encode_mp4,
    encode_wav,
    image_data_url,
    prepare_audio_input,
    prepare_image_input,
)
from warmgate.core.settings import FunctionConfig, Price, Settings
from warmgate.core.spec import DemoModel, File, PipelineSpec, PriceUnit, Runner, SpecBase, deferred
from warmgate.core.threads import load_in_thread
from warmgate.core.usage import Quote, UsageEvent
from warmgate.core.version import __version__

__all__ = [
    "BaseExecutor",
    "Caller",
    "CapacityError",
    "ClientDisconnected",
    "ClientError",
    "ConfigError",
    "DemoModel",
    "Executor",
    "File",
    "FrameProcessor",
    "FunctionConfig",
    "FunctionState",
    "IMAGE_INPUT",
    "InferenceError",
    "LoadError",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "PipelineSpec",
    "Price",
    "PriceUnit",
    "Quote",
    "RateLimited",
    "RequestCancelled",
    "RequestContext",
    "RequestValidationError",
    "Runner",
    "Settings",
    "SpecBase",
    "Unauthorized",
    "UnsupportedMediaType",
    "UsageEvent",
    "WarmgateError",
    "__version__",
    "create_app",
    "current_cancellation",
    "current_request",
    "data_url",
    "decode_audio",
    "decode_image",
    "deferred",
    "encode_mp4",
    "encode_wav",
    "hookimpl",
    "image_data_url",
    "load_in_thread",
    "load_settings",
    "prepare_audio_input",
    "prepare_image_input",
    "raise_if_cancelled",
]
