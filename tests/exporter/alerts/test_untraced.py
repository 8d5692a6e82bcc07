"""Alert delivery records no spans: in the app process the global httpx instrumentation would put the Slack
webhook URL (its path is the secret) into ``url.full`` of a span exported to W&B and the collector."""

from __future__ import annotations

import time

import pytest

from app.demo.receivers import WebhookReceiver
from otel_wandb.alerts._channels import SlackChannel
from otel_wandb.alerts._dispatcher import Dispatcher
from otel_wandb.alerts._evaluator import AlertEvent
from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)

SECRET_PATH = "/services/T0CANARY/B0CANARY/untraced-webhook-secret"


def _event() -> AlertEvent:
    return AlertEvent("fire", "High Error Rate", 0.5, 0.05, "error rate 50% > 5%", "ERROR", ("slack",), 60, time.time())


def test_webhook_posts_make_no_spans_but_the_instrumentation_is_live(telemetry_state, span_exporter):
    with WebhookReceiver() as hooks:
        channel = SlackChannel(hooks.url(SECRET_PATH), timeout=5.0)
        dispatcher = Dispatcher({"slack": channel}, retries=0)
        try:
            dispatcher.submit(_event(), ["slack"])
            assert dispatcher.wait_idle(10)
            assert hooks.wait_for(1)[0].json["text"].endswith("error rate 50% > 5%")
            flush()
            assert not [
                s.name
                for s in span_exporter.get_finished_spans()
                if "untraced-webhook-secret" in str(dict(s.attributes or {}))
            ]
            # positive control: the same client outside the dispatcher is traced (the suppression is what works)
            channel.send(_event())
            flush()
            assert any(
                "untraced-webhook-secret" in str(s.attributes.get("url.full", ""))
                for s in span_exporter.get_finished_spans()
            )
        finally:
            dispatcher.shutdown(5)
