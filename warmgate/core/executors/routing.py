"""Choosing one of a function's runners for a request, and keeping score of each.

No I/O here: the remote executor asks ``Router.choose`` for a runner, tells it how the attempt
went (``succeeded``, ``failed``), and tries another on a failure that reached no client.

- ``warm-first`` (the default): a runner with the model warm and a free slot, least busy first;
  then one whose cold load is under way; a cold runner only when no warm one can take the
  request, and only one cold load at a time per function.
- ``least-busy``: the fewest requests in flight (ties go round the runners).
- ``weighted``: at random in proportion to ``weight``, among runners with a free slot.
- ``cheapest``: the lowest price the request was quoted on the runner, then the least busy.

A runner that fails ``cooldown_failures`` times in a row is skipped for ``cooldown`` seconds,
then tried again (one more failure puts it back in cooldown).
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
import structlog

from warmgate.core.http import wire
from warmgate.core.settings import FunctionConfig, RunnerConfig

__all__ = ["RoutedRunner", "Router"]

_log = structlog.get_logger("warmgate.routing")


class RoutedRunner:
    """One runner of a function: where it is, what it costs, and how it has been doing."""

    __slots__ = ("capacity", "client", "config", "consecutive_failures", "cooldown_until", "cooldowns",
                 "failures", "in_flight", "last_error", "loading", "priced", "reachable", "requests", "retries",
                 "url", "warm", "weight")

    def __init__(self, runner: RunnerConfig, function: FunctionConfig) -> None:
        self.config = runner
        self.url = runner.url.rstrip("/") or runner.executor
        """Its base URL, or ``local``/``ray`` for the gateway's own instance."""
        self.weight = runner.weight
        self.capacity = runner.max_concurrency or function.max_concurrency
        self.priced = function if runner.price is None else _with_price(function, runner)
        """The function's config with this runner's price: what the ``price_request`` hooks price."""
        self.client: Any = None
        """The connection to the runner while the function is loaded (``RemoteRunner``)."""
        self.warm = False
        """The runner has the model loaded (its ``/functions`` or ``/health`` says so, or it just answered)."""
        self.loading = False
        """A request sent while it was cold has not come back: its cold load is under way."""
        self.reachable = True
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.retries = 0
        """Requests that failed here and were tried on another runner."""
        self.cooldowns = 0
        self.consecutive_failures = 0
        self.cooldown_until = 0.0
        self.last_error: str | None = None

    def cooling(self, now: float) -> bool:
        return now < self.cooldown_until

    def info(self, now: float) -> wire.RunnerInfo:
        client = self.client
        return wire.RunnerInfo(
            url=self.url, state=client.status if client is not None else "NOT CONNECTED", warm=self.warm,
            in_flight=self.in_flight, requests=self.requests, failures=self.failures, retries=self.retries,
            cooldowns=self.cooldowns, last_error=self.last_error,
            cooldown_until=time.time() + self.cooldown_until - now if self.cooling(now) else None,
            price=self.config.price, weight=self.weight, max_concurrency=self.capacity)


def _with_price(function: FunctionConfig, runner: RunnerConfig) -> FunctionConfig:
    return msgspec.structs.replace(function, price=runner.price)


class Router:
    """The runners of one function and the strategy that picks among them."""

    def __init__(self, config: FunctionConfig) -> None:
        routing = config.routing
        self.name = config.name
        self.strategy = routing.strategy
        self.cooldown = routing.cooldown
        self.cooldown_failures = routing.cooldown_failures
        self.retries = routing.retries
        self.runners = [RoutedRunner(r, config) for r in config.runner_list]
        self.own_prices = any(r.config.price is not None for r in self.runners)
        """Some runner has its own price: each request is quoted per runner (``RequestContext.offers``)."""
        self._turn = 0

    # -- choosing ----------------------------------------------------------------------

    def choose(self, tried: Collection[RoutedRunner] = (), offers: Mapping[str, int] | None = None) -> RoutedRunner | None:
        """The runner for the next attempt, or None when every runner is tried, cooling down or
        priced out (``offers``: the wei quoted per runner url, only those under the caller's cap)."""
        now = time.monotonic()
        ready = [r for r in self.runners if now >= r.cooldown_until and r.reachable
                 and (not tried or r not in tried) and (offers is None or r.url in offers)]
        if not ready:  # runners the health poll lost, as a last resort
            ready = [r for r in self.runners if now >= r.cooldown_until and r not in tried
                     and (offers is None or r.url in offers)]
            if not ready:
                return None
        if len(ready) == 1:
            return ready[0]
        strategy = self.strategy
        if strategy == "warm-first":
            return self._warm_first(ready)
        if strategy == "weighted":
            free = [r for r in ready if r.in_flight < r.capacity]
            if free:
                return random.choices(free, weights=[r.weight for r in free])[0]  # noqa: S311 (not security)
        if strategy == "cheapest" and offers is not None:
            return min(ready, key=lambda r: (offers[r.url], r.in_flight / r.capacity))
        return self._least_busy(ready)

    def _warm_first(self, ready: list[RoutedRunner]) -> RoutedRunner:
        free = [r for r in ready if r.warm and r.in_flight < r.capacity]
        if free:
            return self._least_busy(free)
        loading = [r for r in ready if r.loading and r.in_flight < r.capacity]
        if loading:
            return self._least_busy(loading)
        if not any(r.loading for r in self.runners):  # one cold load at a time per function
            cold = [r for r in ready if not r.warm]
            if cold:
                return self._least_busy(cold)
        busy = [r for r in ready if r.warm or r.loading]
        return self._least_busy(busy or ready)

    def _least_busy(self, runners: Sequence[RoutedRunner]) -> RoutedRunner:
        """Fewest in flight for its capacity; the scan starts one further each time, so ties go
        round and an idle pool spreads."""
        count = len(runners)
        self._turn = turn = (self._turn + 1) % count
        best, best_load = runners[turn], runners[turn].in_flight / runners[turn].capacity
        for k in range(1, count):
            runner = runners[(turn + k) % count]
            load = runner.in_flight / runner.capacity
            if load < best_load:
                best, best_load = runner, load
        return best

    # -- keeping score -----------------------------------------------------------------

    def started(self, runner: RoutedRunner) -> None:
        runner.in_flight += 1
        runner.requests += 1
        if not runner.warm:
            runner.loading = True

    def ended(self, runner: RoutedRunner) -> None:
        runner.in_flight -= 1

    def succeeded(self, runner: RoutedRunner, *, served: bool) -> None:
        """The runner answered (``served``: with a 2xx, so its model is warm now)."""
        runner.consecutive_failures = 0
        runner.reachable = True
        runner.loading = False
        if served:
            runner.warm = True

    def retried(self, failed: RoutedRunner, next_runner: RoutedRunner) -> None:
        """The request that failed on ``failed`` goes to ``next_runner``."""
        failed.retries += 1
        _log.warning("runner_retry", function=self.name, url=failed.url, next=next_runner.url, error=failed.last_error)

    def failed(self, runner: RoutedRunner, error: str) -> None:
        runner.failures += 1
        runner.consecutive_failures += 1
        runner.last_error = error
        runner.loading = False
        if runner.consecutive_failures >= self.cooldown_failures and not runner.cooling(time.monotonic()):
            self.cool_down(runner)

    def health_seen(self, runner: RoutedRunner, client: Any) -> None:
        """A health poll's news: whether the runner is reachable and has the model warm. One
        that answers again after being unreachable starts with a clean slate (its cooldown, if
        any, still runs out first)."""
        if client.status == "UNREACHABLE":
            runner.reachable, runner.warm = False, False
            runner.last_error = client.error
            return
        if not runner.reachable:
            runner.consecutive_failures = 0
        runner.reachable = True
        runner.warm = client.warm
        if client.warm or client.loading:  # a load under way there counts as the function's one cold load
            runner.loading = client.loading

    def cool_down(self, runner: RoutedRunner) -> None:
        runner.cooldown_until = time.monotonic() + self.cooldown
        runner.cooldowns += 1
        _log.warning("runner_cooldown", function=self.name, url=runner.url, seconds=self.cooldown,
                     failures=runner.consecutive_failures, error=runner.last_error)

    def retry_after(self) -> float | None:
        """Seconds until the first runner in cooldown is back, or None if none is cooling."""
        now = time.monotonic()
        ends = [r.cooldown_until - now for r in self.runners if r.cooling(now)]
        return max(0.1, min(ends)) if ends else None

    def info(self) -> list[wire.RunnerInfo]:
        now = time.monotonic()
        return [r.info(now) for r in self.runners]
