"""AI features through the official openai SDK, against any OpenAI-compatible endpoint.

``LLMService.run(feature, text, pseudo_id=...)`` builds the prompt from the entry text, calls chat completions
inside ``telemetry.ai_call_context`` (so the GenAI span gets ``app.feature`` and the pseudonymous user), prices the
usage and adds it to the ``app.ai.cost`` counter. Failures become :class:`ApiError` 502/503/504; nothing here logs
the text, the prompt or the completion.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.metrics import Meter

from app import telemetry
from app.config import Settings
from app.errors import ApiError
from otel_wandb.pricing import Cost, PriceList

logger = logging.getLogger(__name__)
PROVIDER = "openai"
_ERROR_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

SYSTEM_PROMPTS = {
    "summarize": "You summarize private diary entries. Reply with a faithful two or three sentence summary in the "
    "language of the entry. Do not add advice.",
    "reflect": "You are a gentle journaling companion. Reply with a short reflection (at most four sentences) on "
    "the diary entry and one open question that invites further writing.",
    "mood": "Classify the dominant mood of the diary entry. Reply with only a JSON object: "
    '{"mood": "<one lowercase word>", "score": <number from 0 (very negative) to 1 (very positive)>}.',
}


@dataclass(frozen=True, slots=True)
class Completion:
    result: str | dict[str, Any]
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: Cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "model": self.model,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens,
            },
            "cost_usd": self.cost.usd,
            "pricing_known": self.cost.known,
        }


class _ContentFreeErrorsClient(openai.OpenAI):
    """The SDK's client, except that an HTTP error's message is ``Error code: <status> (<type>)`` only.

    The SDK puts the provider's ``error.message`` into the exception text, and providers may quote the prompt
    there; the GenAI instrumentation copies that text into the span status before our code sees the exception.
    The full body stays on ``exc.body`` (never recorded)."""

    def _make_status_error(self, _err_msg: str, *, body: object, response: Any) -> openai.APIStatusError:
        data = body.get("error", body) if isinstance(body, dict) else None
        kind = data.get("type") if isinstance(data, dict) else None
        safe = f"Error code: {response.status_code}"
        if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind):
            safe += f" ({kind})"
        return super()._make_status_error(safe, body=body, response=response)


class LLMService:
    def __init__(self, settings: Settings, prices: PriceList, meter: Meter) -> None:
        self.settings = settings
        self.prices = prices
        self.cost_counter = meter.create_counter(
            "app.ai.cost",
            unit="USD",
            description="Cost of AI feature calls, from token usage and exporters/src/otel_wandb/pricing.json",
        )
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def client(self) -> openai.OpenAI:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    s = self.settings
                    key = s.OPENAI_API_KEY.get_secret_value() if s.OPENAI_API_KEY else None
                    if not key and not s.OPENAI_BASE_URL:
                        raise ApiError(
                            503, "ai_not_configured", "AI is not configured (set OPENAI_API_KEY or OPENAI_BASE_URL)"
                        )
                    self._client = _ContentFreeErrorsClient(
                        api_key=key or "no-key",
                        base_url=s.OPENAI_BASE_URL,
                        timeout=s.OPENAI_TIMEOUT,
                        max_retries=s.OPENAI_MAX_RETRIES,
                    )
        return self._client

    def run(self, feature: str, text: str, *, pseudo_id: str) -> Completion:
        model = self.settings.model_for(feature)
        client = self.client()
        kwargs: dict[str, Any] = {}
        if feature == "mood":
            kwargs["response_format"] = {"type": "json_object"}
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM_PROMPTS[feature]},
            {"role": "user", "content": text},
        ]
        try:
            with telemetry.ai_call_context(feature, pseudo_id):
                response = client.chat.completions.create(
                    model=model, messages=messages, max_completion_tokens=self.settings.AI_MAX_OUTPUT_TOKENS, **kwargs
                )
        except openai.OpenAIError as exc:
            raise _map_error(exc, feature, model) from None
        except Exception as exc:  # noqa: BLE001 - a 200 the SDK or its instrumentation could not digest (a body
            # that is not JSON; usage counts that are not numbers make the GenAI instrumentation raise TypeError)
            logger.warning(
                "AI call failed: feature=%s model=%s error=%s (unreadable response)", feature, model, type(exc).__name__
            )
            raise ApiError(502, "llm_bad_output", f"the model's answer for '{feature}' was not readable") from None
        return self._complete(feature, model, response)

    def _complete(self, feature: str, model: str, response: Any) -> Completion:
        content = response.choices[0].message.content if response.choices else None
        if not content or not content.strip():
            raise ApiError(502, "llm_bad_output", f"the model returned no content for '{feature}'")
        result: str | dict[str, Any] = content.strip()
        if feature == "mood":
            result = _parse_mood(content)
        usage = response.usage
        in_tok = _count(getattr(usage, "prompt_tokens", 0))
        out_tok = _count(getattr(usage, "completion_tokens", 0))
        cached = _count(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0))
        cost = self.prices.cost([response.model, model], in_tok, out_tok, cached)
        attrs: dict[str, Any] = {
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": model,
            "app.feature": feature,
        }
        if not cost.known:
            attrs["app.pricing.unknown"] = True
        try:
            self.cost_counter.add(cost.usd, attrs)
        except Exception:  # noqa: BLE001 - telemetry never breaks the request
            logger.exception("could not record app.ai.cost")
        return Completion(result, response.model or model, in_tok, out_tok, cached, cost)


def _parse_mood(content: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("mood"), str) or not data["mood"].strip():
        raise ApiError(502, "llm_bad_output", "the model's mood answer was not the expected JSON object")
    out: dict[str, Any] = {"mood": data["mood"].strip().lower()[:40]}
    score = data.get("score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        try:
            value = float(score)
        except OverflowError:  # an integer too large for a float
            value = math.nan
        if math.isfinite(value):  # NaN and Infinity are not JSON: no score rather than an invalid document
            out["score"] = min(1.0, max(0.0, value))
    return out


def _count(value: Any) -> int:
    """A token count as the provider sent it (the SDK does not validate): non-negative int, else 0."""
    if isinstance(value, bool):
        return 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def _map_error(exc: openai.OpenAIError, feature: str, model: str) -> ApiError:
    """The API error for a failed AI call, logged once: ERROR when the user gets a 502/504 (the provider failed
    after the SDK's retries), WARNING for rate limiting (503, the client is told to retry)."""
    error = _api_error(exc)
    level = logging.WARNING if error.status == 503 else logging.ERROR
    logger.log(
        level,
        "AI call failed: feature=%s model=%s error=%s status=%s -> %s",
        feature,
        model,
        type(exc).__name__,
        getattr(exc, "status_code", None),
        error.status,
    )
    return error


def _api_error(exc: openai.OpenAIError) -> ApiError:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APITimeoutError):
        return ApiError(504, "llm_timeout", "the AI provider did not answer in time")
    if isinstance(exc, openai.RateLimitError):
        return ApiError(
            503, "llm_rate_limited", "the AI provider is rate limiting; retry later", headers={"Retry-After": "5"}
        )
    if isinstance(exc, openai.APIConnectionError):
        return ApiError(502, "llm_unreachable", "the AI provider could not be reached")
    if isinstance(exc, openai.APIStatusError) and status is not None and status >= 500:
        return ApiError(502, "llm_upstream_error", f"the AI provider failed ({status})")
    return ApiError(502, "llm_error", f"the AI provider rejected the request ({status or type(exc).__name__})")
