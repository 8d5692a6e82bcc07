"""Token prices (app/pricing.json or PRICING_FILE) and the cost of one call.

cost = ((input - cached) * input_price + cached * cached_input_price + output * output_price) / 1e6.
An unknown model costs 0 but is *flagged*: ``Cost.known`` is False (the cost metric point carries
``app.pricing.unknown=true``) and one warning is logged per model per process.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
DEFAULT_FILE = os.path.join(os.path.dirname(__file__), "pricing.json")
PER_TOKENS = 1_000_000
MAX_WARNED = 256
_WARNED: set[str] = set()  # models already warned about, per process
_WARNED_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    cached_input: float
    output: float


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    known: bool


class PricingError(ValueError):
    pass


class PriceList:
    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices

    @classmethod
    def load(cls, path: str | None = None) -> PriceList:
        path = path or DEFAULT_FILE
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            prices = {name: _price(name, p) for name, p in data["models"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PricingError(f"PRICING_FILE {path}: {exc}") from None
        return cls(prices)

    def lookup(self, model: str) -> tuple[str, Price] | None:
        """Exact name, else the longest listed name that ``model`` extends with '-' (dated snapshots)."""
        if model in self.prices:
            return model, self.prices[model]
        best = max((n for n in self.prices if model.startswith(n + "-")), key=len, default=None)
        return (best, self.prices[best]) if best else None

    def cost(self, models: list[str | None], input_tokens: int, output_tokens: int, cached_tokens: int) -> Cost:
        """Prices by the first model of ``models`` that is listed (response model, then requested model)."""
        names = [m for m in models if m]
        for name in names:
            found = self.lookup(name)
            if found:
                _, p = found
                cached = min(max(cached_tokens, 0), input_tokens)
                usd = ((input_tokens - cached) * p.input + cached * p.cached_input
                       + output_tokens * p.output) / PER_TOKENS
                return Cost(round(usd, 12), True)
        label = names[0] if names else "<none>"
        with _WARNED_LOCK:  # bounded: the response's model name comes from the provider
            first = label not in _WARNED and len(_WARNED) < MAX_WARNED
            if first:
                _WARNED.add(label)
        if first:
            logger.warning("no price for model %s: its cost is counted as 0 and flagged app.pricing.unknown", label)
        return Cost(0.0, False)


def _price(name: str, raw: Any) -> Price:
    try:
        price = Price(float(raw["input"]), float(raw.get("cached_input", raw["input"])), float(raw["output"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise PricingError(f"model {name!r} needs numeric 'input', 'output' (and optional 'cached_input')") from None
    if min(price.input, price.cached_input, price.output) < 0:
        raise PricingError(f"model {name!r} has a negative price")
    return price
