"""Token prices and the cost of one LLM call: one model and one parser, used by the core (span-priced
``ai/cost_usd``) and by applications that price their own calls (the ai-diary service's ``app.ai.cost``).

File format (JSON; the bundled ``pricing.json`` is the default)::

    {"unit": "per_1m_tokens",                        # optional: per_1m_tokens (default), per_1k_tokens, per_token
     "models": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60}, ...}}

``input`` and ``output`` are required numbers >= 0; ``cached_input`` (the price of prompt tokens served from the
provider's cache) defaults to ``input``. Keys starting with ``_`` are comments. A model name matches exactly, else
the longest listed name it extends with ``-`` (dated snapshots: ``gpt-4o-mini-2024-07-18`` is ``gpt-4o-mini``).

cost = ((input - cached) * input_price + cached * cached_input_price + output * output_price), in USD.
An unknown model costs 0 but is *flagged*: ``Cost.known`` is False, and one warning is logged per model per process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_wandb.config import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).resolve().parent / "pricing.json"
UNITS = {"per_1m_tokens": 1e-6, "per_1k_tokens": 1e-3, "per_token": 1.0}
MAX_WARNED = 256
MAX_CACHED = 1000
_WARNED: set[str] = set()  # models already warned about, per process
_WARNED_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token."""

    input: float
    cached_input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
        cached = min(max(cached_tokens, 0), input_tokens)
        return (input_tokens - cached) * self.input + cached * self.cached_input + output_tokens * self.output


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    known: bool


class PriceList:
    """Prices per model name. ``PriceList()`` is empty: every model is unknown."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = dict(prices or {})
        self._found: dict[str, tuple[str, Price] | None] = {}

    @classmethod
    def load(cls, path: str | Path | None = None, *, variable: str = "pricing file") -> PriceList:
        """The file at ``path`` (default: the bundled list); ``ConfigError`` naming ``variable`` when it cannot be
        read or is not a valid price list."""
        try:
            data = json.loads(Path(path or DEFAULT_FILE).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{variable}: the pricing file cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConfigError(f"{variable}: the pricing file is not JSON ({exc})") from None
        return cls.parse(data, variable=variable)

    @classmethod
    def parse(cls, data: Any, *, variable: str = "pricing file") -> PriceList:
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ConfigError(f"{variable}: a price list is an object with a 'models' object")
        unit = data.get("unit", "per_1m_tokens")
        if unit not in UNITS:
            raise ConfigError(f"{variable}: 'unit' must be one of {', '.join(UNITS)}")
        scale = UNITS[unit]
        return cls(
            {
                name: _price(name, entry, scale, variable)
                for name, entry in data["models"].items()
                if not name.startswith("_")
            }
        )

    def lookup(self, model: str) -> tuple[str, Price] | None:
        """``(listed name, price)`` for the exact name, else the longest listed name ``model`` extends with '-'."""
        if model in self._found:
            return self._found[model]
        if model in self.prices:
            found: tuple[str, Price] | None = (model, self.prices[model])
        else:
            best = max((n for n in self.prices if model.startswith(n + "-")), key=len, default=None)
            found = (best, self.prices[best]) if best else None
        if len(self._found) < MAX_CACHED:  # bounded: model names come from providers and spans
            self._found[model] = found
        return found

    def cost(self, models: list[str | None], input_tokens: int, output_tokens: int, cached_tokens: int) -> Cost:
        """Priced by the first of ``models`` that is listed (response model, then requested model)."""
        names = [m for m in models if m]
        for name in names:
            found = self.lookup(name)
            if found:
                return Cost(round(found[1].cost(input_tokens, output_tokens, cached_tokens), 12), True)
        label = names[0] if names else "<none>"
        with _WARNED_LOCK:  # bounded: the response's model name comes from the provider
            first = label not in _WARNED and len(_WARNED) < MAX_WARNED
            if first:
                _WARNED.add(label)
        if first:
            logger.warning("no price for model %s: its cost is counted as 0 and flagged unknown", label)
        return Cost(0.0, False)


def _price(name: str, raw: Any, scale: float, variable: str) -> Price:
    def number(key: str, default: float | None = None) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{variable}: model {name!r} needs numeric 'input', 'output' (and optional 'cached_input')"
            )
        if value < 0 or value != value or value == float("inf"):
            raise ConfigError(f"{variable}: model {name!r} has a negative or non-finite price")
        return float(value)

    if not isinstance(raw, dict):
        raise ConfigError(f"{variable}: model {name!r} must map to an object of prices")
    inp = number("input")
    return Price(inp * scale, number("cached_input", inp) * scale, number("output") * scale)
