"""warmgate: an LLM-first, serverless AI gateway speaking the Livepeer AI API and OpenAI chat."""

from warmgate.core.app import create_app
from warmgate.core.config import load_settings
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
    RequestValidationError,
    Unauthorized,
    UnsupportedMediaType,
    WarmgateError,
)
from warmgate.core.executors import BaseExecutor, Executor
from warmgate.core.functions import FunctionState
from warmgate.core.hookspecs import hookimpl
from warmgate.core.live import FrameProcessor
from warmgate.core.settings import FunctionConfig, Price, Settings
from warmgate.core.spec import DemoModel, File, PipelineSpec, PriceUnit, Runner
from warmgate.core.version import __version__

__all__ = [
    "BaseExecutor",
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
    "InferenceError",
    "LoadError",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "PipelineSpec",
    "Price",
    "PriceUnit",
    "RequestValidationError",
    "Runner",
    "Settings",
    "Unauthorized",
    "UnsupportedMediaType",
    "WarmgateError",
    "__version__",
    "create_app",
    "hookimpl",
    "load_settings",
]
