"""The ray executor's section of ``serverless.yaml``."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from warmgate.core.settings import SettingsSection

__all__ = ["RaySettings"]


class RaySettings(SettingsSection):
    """``ray:``: where ``executor: ray`` functions run."""

    key: ClassVar[str] = "ray"

    address: str = ""
    """A Ray cluster to join (``ray://`` or ``host:port``); blank: ``$RAY_ADDRESS``, else a local
    cluster started by the gateway on 127.0.0.1 and stopped with it."""
    num_cpus: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """CPUs of a local cluster; blank: all of them."""
    namespace: str = "warmgate"
