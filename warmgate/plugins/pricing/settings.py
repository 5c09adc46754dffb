"""The pricing plugin's section of ``serverless.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Self

import msgspec

from warmgate.core.settings import FunctionConfig, Settings, SettingsSection

__all__ = ["PricingSettings", "pricing_settings"]


class PricingSettings(SettingsSection):
    """``pricing:``: fiat rates, and where keys, balances, holds and the ledger are kept."""

    key: ClassVar[str] = "pricing"

    eth_rates: dict[str, Annotated[float, msgspec.Meta(gt=0)]] = {}
    """Price of one ETH per fiat currency, e.g. ``{USD: 3000}``, for prices set in fiat."""
    ledger: str = ""
    """SQLite file of usage events; blank: ``<gateway.cache_dir>/usage.sqlite``; ``off``: none."""
    database: str = ""
    """``postgresql://user:password@host:5432/db``: keys, balances, holds and the ledger in
    PostgreSQL, shared by several gateways (in place of the ``ledger`` file); blank: SQLite.
    ``$WARMGATE_DATABASE_URL`` overrides it."""
    hold_lease: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """PostgreSQL: seconds a gateway's holds outlive it when it dies (it renews its lease every
    third of this); then any other gateway releases them."""
    ledger_sync: Literal["full", "normal"] = "full"
    """SQLite. ``full``: each group commit is synced to disk right after it, by a thread of its
    own (a settled row survives power loss; answers wait for no sync, see ``holds.py``).
    ``normal``: left to the OS. Either survives a crash or ``kill -9`` of the gateway."""

    def with_env(self, env: Mapping[str, str]) -> Self:
        """``$WARMGATE_DATABASE_URL`` is ``database``."""
        url = env.get("WARMGATE_DATABASE_URL", "").strip()
        return msgspec.structs.replace(self, database=url) if url else self

    def check(self, settings: Settings) -> tuple[str, str] | None:
        """Keys are kept in the ledger's database."""
        if settings.auth.keys and self.ledger.lower() == "off":
            return "auth.keys", "keys are kept in the usage ledger's database, but pricing.ledger is off"
        return None

    def check_function(self, config: FunctionConfig) -> tuple[str, str] | None:
        """A price in fiat, the function's or a runner's, needs its ETH rate."""
        rates = {code.upper() for code in self.eth_rates}
        prices = [("price", config.price)]
        prices += [(f"runners[{j}].price", r.price) for j, r in enumerate(config.runners or ())]
        for where, price in prices:
            currency = price.currency.upper() if price is not None else "WEI"
            if currency not in ("WEI", "ETH") and currency not in rates:
                return f"{where}.currency", f"{currency} needs its ETH rate in pricing.eth_rates (e.g. {{{currency}: 3000}})"
        return None


def pricing_settings(settings: Settings) -> PricingSettings:
    """The gateway's ``pricing:`` section (its defaults when the file has none)."""
    return settings.section(PricingSettings)
