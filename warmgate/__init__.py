"""warmgate: an LLM-first, serverless AI gateway speaking the Livepeer AI API and OpenAI chat."""

from warmgate.core.config import load_settings
from warmgate.core.context import RequestContext, current_request
from warmgate.core.executors import BaseExecutor, Executor
from warmgate.core.functions.cancel import RequestCancelled, current_cancellation, raise_if_cancelled
from warmgate.core.functions.function import FunctionState
from warmgate.core.functions.spec import DemoModel, File, PipelineSpec, PriceUnit, Runner, SpecBase, deferred
from warmgate.core.functions.threads import load_in_thread
from warmgate.core.hookspecs import hookimpl
from warmgate.core.http.app import create_app
from warmgate.core.http.auth import Caller
from warmgate.core.http.errors import (
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
from warmgate.core.settings import FunctionConfig, Price, Settings, SettingsSection
from warmgate.core.usage import Quote, UsageEvent
from warmgate.core.version import __version__
from warmgate.plugins.live.pipelines import FrameProcessor

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
    "SettingsSection",
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
