"""A poison span never holds up the valid ones: through the real collector (persistent queue, retries without an
end), a batch whose one span the bridge cannot take is answered with a partial success -- the collector drops
nothing valid and retries nothing -- and the bridge's run counts every valid span."""

from __future__ import annotations

import pytest

from app.demo.topology import start_bridge
from otel_wandb.runfile import find_runs, read_run
from tests.support import wait_until
from tests.support.collector import post, spans_request
from tests.support.otlp import nested_value

pytestmark = pytest.mark.integration


def _poisoned_batch(valid: int) -> bytes:
    """``valid`` good spans and, in the same batch, one whose attribute nests 40 kvlist levels deep (the bridge
    once dropped the connection on it, and the collector retried the whole batch for ever)."""
    req = spans_request(valid + 1, attrs={"http.route": "/poisoned-batch"})
    kv = req.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key = "deep"
    kv.value.CopyFrom(nested_value(40))
    return req.SerializeToString()


def test_a_poison_span_does_not_hold_up_the_valid_ones(start_collector, tmp_path):
    bridge = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path / "wandb"),
            "WANDB_EXPORT_INTERVAL": "1",
            "ALERTS_ENABLED": "false",
        }
    )
    try:
        col = start_collector(
            {
                "WANDB_BRIDGE_EXPORTER": "otlp_http/wandb_bridge",
                "WANDB_BRIDGE_ENDPOINT": bridge.url,
                "WANDB_BRIDGE_TOKEN": "",
                "WANDB_BRIDGE_RETRY_INITIAL": "100ms",
                "WANDB_BRIDGE_RETRY_MAX_INTERVAL": "200ms",
                "WANDB_BRIDGE_RETRY_MAX_ELAPSED": "0s",
            }
        )
        assert post(col.http_endpoint, "/v1/traces", _poisoned_batch(10))[0] == 200
        stats = wait_until(lambda: (s := bridge.stats())["spans"] >= 10 and s, 30, "the valid spans at the bridge")
        assert stats["spans"] == 10 and stats["rejected"] == 1
        # more traffic after it flows too, and the poisoned request was answered once: no retry loop
        assert post(col.http_endpoint, "/v1/traces", spans_request(5, start=100).SerializeToString())[0] == 200
        wait_until(lambda: bridge.stats()["spans"] >= 15, 30, "the spans sent after the poison")
        requests = bridge.stats()["requests"]
        with pytest.raises(AssertionError):  # nothing more arrives: a retry would be a new request
            wait_until(lambda: bridge.stats()["requests"] > requests, 2.0, "a retried request")
        col.stop()
    finally:
        assert bridge.stop() == 0
    run = read_run(find_runs(tmp_path / "wandb")[0])
    assert sum(run.series("http/requests@http.route=/poisoned-batch")) == 10
    assert sum(run.series("rejected/spans")) == 1
