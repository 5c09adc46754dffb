"""Test kit for warmgate and its plugin authors: sample pipelines, a mock runner, a real server.

Add ``pytest_plugins = ["warmgate.testing.fixtures"]`` to a ``conftest.py`` for the fixtures.
"""

from warmgate.testing.pipelines import (
    EchoPipeline,
    EchoRequest,
    EchoResponse,
    MockRunner,
    UploadRequest,
    UploadResponse,
    mock_pipeline,
    upload_pipeline,
)
from warmgate.testing.server import LiveServer, serve
from warmgate.testing.waiting import wait_for

__all__ = [
    "EchoPipeline",
    "EchoRequest",
    "EchoResponse",
    "LiveServer",
    "MockRunner",
    "UploadRequest",
    "UploadResponse",
    "mock_pipeline",
    "serve",
    "upload_pipeline",
    "wait_for",
]
