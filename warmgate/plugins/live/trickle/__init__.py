"""Livepeer's trickle protocol, both sides: a server of channels (``TrickleServer``, an ASGI
app the gateway mounts at ``/ai/trickle``) and aiohttp clients (``TricklePublisher``,
``TrickleSubscriber``).

Its own package, not ``core``: it is a protocol that knows nothing of pipelines or functions,
and only live video uses it; ``core`` stays what every request goes through.

The clients live in ``warmgate.plugins.live.trickle.client`` (they import aiohttp; the server does not).
"""

from warmgate.plugins.live.trickle.channels import Channel, Segment
from warmgate.plugins.live.trickle.server import TrickleServer, trickle_route

__all__ = ["Channel", "Segment", "TrickleServer", "trickle_route"]
