"""Deterministic answers and realistic usage for the local OpenAI-compatible server (app/local_llm/).

Output: a hash of the model and messages picks canned sentences; the prompt is never echoed. Usage: the prompt is
a token sequence (per message 4 framing tokens plus its text in ~4-character tokens, then 3 reply-priming tokens),
so ``prompt_tokens`` is its length. Prompt caching follows OpenAI's documented rule: only prompts of at least 1024
tokens are cached, and a repeat reports the longest previously seen prefix in 128-token steps after the first 1024
(1024, 1152, 1280, ...) as ``prompt_tokens_details.cached_tokens``; shorter prompts never report cached tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

CHARS_PER_TOKEN = 4
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
CACHE_MAX_PREFIXES = 100_000  # bounded memory: the oldest prefixes are forgotten first
REPLY_PRIMING_TOKENS = 3

SENTENCES = (
    "It sounds like today asked a lot of you.",
    "You noticed small moments of calm between the busy parts.",
    "There is a quiet pride in how you handled the afternoon.",
    "Some worry remains, and naming it is already a step.",
    "Rest seems to matter more than usual this week.",
    "A conversation with someone close lifted the mood.",
    "You are learning what drains you and what restores you.",
    "Tomorrow might benefit from one unhurried hour.",
    "Gratitude shows up in the details you chose to write down.",
    "Overall the tone is steady, with a hopeful ending.",
)


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_token_sequence(messages: list[Any]) -> list[str]:
    """The prompt as tokens: per message its role framing, then its text in CHARS_PER_TOKEN pieces; then the
    reply priming. ``len()`` of it is ``usage.prompt_tokens``."""
    tokens: list[str] = []
    for msg in messages:
        role = str(msg.get("role", "")) if isinstance(msg, dict) else ""
        text = _content_text(msg.get("content")) if isinstance(msg, dict) else ""
        tokens += [f"<|start|>{role}", "<|sep|>", "<|sep|>", "<|message|>"]  # the role framing: 4 tokens
        tokens += [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
    return tokens + ["<|start|>assistant"] * REPLY_PRIMING_TOKENS


class PromptCache:
    """Prompt prefixes seen before, at OpenAI's caching granularity. Not thread-safe: the caller holds a lock."""

    def __init__(self, max_prefixes: int = CACHE_MAX_PREFIXES) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._max = max_prefixes

    def cached_tokens(self, tokens: list[str]) -> int:
        """Cached tokens of this prompt (the longest cacheable prefix seen before; 0 below 1024 tokens), and
        remembers every cacheable prefix of it."""
        hasher = hashlib.sha256()
        done, cached, keys = 0, 0, []
        for boundary in range(CACHE_MIN_TOKENS, len(tokens) + 1, CACHE_STEP_TOKENS):
            for token in tokens[done:boundary]:
                hasher.update(token.encode("utf-8", "surrogatepass") + b"\x00")
            done = boundary
            key = hasher.copy().digest()
            keys.append(key)
            if key in self._seen:
                cached = boundary
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return cached


def answer(body: dict[str, Any]) -> tuple[str, str, int]:
    """(text, finish_reason, completion_tokens) of a chat request: deterministic, never echoing the prompt."""
    messages = body.get("messages") or []
    model = str(body.get("model", ""))
    digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True, default=str).encode()).digest()
    count = 2 + digest[0] % 3
    text = " ".join(SENTENCES[(digest[1 + i]) % len(SENTENCES)] for i in range(count))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        text = json.dumps(
            {
                "mood": ("calm", "tired", "hopeful", "anxious", "content")[digest[5] % 5],
                "score": round((digest[6] % 100) / 100, 2),
                "summary": SENTENCES[digest[7] % 10],
            }
        )
    completion_tokens = estimate_tokens(text)
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < completion_tokens:
        text, completion_tokens, finish = text[: limit * CHARS_PER_TOKEN], limit, "length"
    return text, finish, completion_tokens


def usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
