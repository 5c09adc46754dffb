"""The console: a page at ``/console`` that shows the functions (live), their prices and usage,
the hardware, and a form per pipeline to try it, drawn from its ``PipelineSpec``. Plain HTML and
JavaScript shipped in the package, served by the gateway itself. A built-in plugin."""

from __future__ import annotations

from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.plugins.console.routes import ROUTES


@hookimpl
def register_routes(register: Any) -> None:
    for route in ROUTES:
        register(route)
