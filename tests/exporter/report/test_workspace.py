"""The W&B dashboard spec references only keys the real core emits, and builds into wandb-workspaces objects."""

from __future__ import annotations

import json
import re

import pytest

from otel_wandb import records as r
from otel_wandb.config import BridgeConfig, ConfigError, RunConfig
from otel_wandb.core import Aggregator, CoreConfig
from otel_wandb.pricing import Price, PriceList
from otel_wandb.report import _workspace as dashboard

SECTIONS = ["Requests", "Latency", "Errors", "AI usage & cost", "Alerts"]


def produced_keys() -> set[str]:
    """Row keys and ``tables/<name>`` keys the real Aggregator emits for representative traffic over 2 intervals."""
    agg = Aggregator(
        CoreConfig(pricing=PriceList({"m1": Price(input=1e-6, cached_input=5e-7, output=2e-6)})), start_ns=1
    )
    keys: set[str] = set()
    for i in range(2):
        t = (i + 1) * 10**10
        spans = []
        for k, (route, code) in enumerate(
            [("/api/entries", 200), ("/api/entries/<int:id>", 500), ("/api/entries", 404)]
        ):
            tid = f"{i:02d}{k:030d}"
            spans.append(
                r.SpanRecord(
                    "GET " + route,
                    r.SERVER,
                    t - 5 * 10**8,
                    t - 10**8,
                    tid,
                    f"{k:016d}",
                    is_error=code >= 500,
                    attributes={"http.route": route, "http.request.method": "GET", "http.response.status_code": code},
                    exceptions=(r.ExceptionInfo("ValueError", f"bad {i}"),) if code >= 500 else (),
                )
            )
            spans.append(
                r.SpanRecord(
                    "chat m1",
                    r.CLIENT,
                    t - 4 * 10**8,
                    t - 2 * 10**8,
                    tid,
                    f"{k + 9:016d}",
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "m1",
                        "app.feature": "summarize",
                        "gen_ai.usage.input_tokens": 10,
                        "gen_ai.usage.output_tokens": 5,
                    },
                )
            )
        agg.add_spans(spans)
        agg.add_metrics(
            [
                r.MetricPoint(
                    "app.ai.cost",
                    r.SUM,
                    "USD",
                    {"gen_ai.request.model": "m1", "app.feature": "summarize"},
                    start_time_ns=1,
                    time_ns=t,
                    monotonic=True,
                    value=0.01 * (i + 1),
                )
            ]
        )
        agg.add_logs([r.LogRecord(t - 1, 9, "INFO", "ok"), r.LogRecord(t - 1, 17, "ERROR", "boom")])
        res = agg.flush(t)
        keys |= set(res.row) | {f"tables/{name}" for name in res.tables}  # the sink logs tables as tables/<name>
    return keys


@pytest.fixture(scope="module")
def produced() -> set[str]:
    return produced_keys()


def test_sections_are_the_issue_s():
    assert [s.name for s in dashboard.spec()] == SECTIONS
    assert all(s.panels for s in dashboard.spec())


def test_every_referenced_key_is_produced(produced):
    assert dashboard.check_keys(produced) == []


def test_the_check_catches_a_wrong_key(produced):
    bad = (
        dashboard.SectionSpec(
            "Requests",
            (
                dashboard.PanelSpec("typo", keys=("http/request",)),
                dashboard.PanelSpec("bad regex", regex=r"^http/requests@route=.+$"),
            ),
        ),
    )
    assert dashboard.check_keys(produced, bad) == [
        "key 'http/request' is not produced by the exporters",
        "regex '^http/requests@route=.+$' matches no produced key",
    ]


def test_breakdown_regexes_select_only_their_breakdown(produced):
    _, regexes = dashboard.referenced_keys()
    for rx in regexes:
        matched = [k for k in produced if re.search(rx, k)]
        assert matched and all("@" in k for k in matched), (rx, matched)
        assert not any(k.endswith("_total") for k in matched)
    per_route = dashboard.spec()[0].panels[1].regex
    assert sorted(k for k in produced if re.search(per_route, k)) == [
        "http/requests@http.route=/api/entries",
        "http/requests@http.route=/api/entries/<int:id>",
    ]


def test_builds_wandb_workspace_objects_without_saving():
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    workspace = dashboard.build_workspace("my-team", "ai-diary")
    assert isinstance(workspace, ws.Workspace)
    assert [s.name for s in workspace.sections] == SECTIONS
    for section, s_spec in zip(workspace.sections, dashboard.spec()):
        assert len(section.panels) == len(s_spec.panels)
        for panel, p in zip(section.panels, s_spec.panels):
            if p.kind == dashboard.LINE:
                assert isinstance(panel, wr.LinePlot) and panel.x == dashboard.STEP
                assert (panel.metric_regex == p.regex) if p.regex else (list(panel.y) == list(p.keys))
            elif p.kind == dashboard.TABLE:
                assert isinstance(panel, wr.WeavePanelSummaryTable) and panel.table_name == p.keys[0]
            else:
                assert isinstance(panel, wr.MarkdownPanel)
    model = workspace._to_model()  # the exact structure .save() would upload
    doc = json.loads(model.model_dump_json(by_alias=True))
    found: dict[str, set] = {"metricRegex": set(), "metrics": set(), "chartTitle": set()}

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in found and v:
                    found[k].update(v if isinstance(v, list) else [v])
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    _keys, regexes = dashboard.referenced_keys()
    line_keys = {k for s in dashboard.spec() for p in s.panels if p.kind == dashboard.LINE for k in p.keys}
    assert found["metricRegex"] == regexes
    assert found["metrics"] == line_keys
    assert {"Server latency p50 / p95 / p99 (ms)", "Cost per model (USD, app.ai.cost)"} <= found["chartTitle"]


def test_publish_needs_an_api_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="WANDB_API_KEY"):
        dashboard.publish("e", "p")


@pytest.mark.parametrize(
    "env, wanted",
    [
        ({}, False),  # no key: the run is offline
        ({"WANDB_API_KEY": "k"}, True),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, False),
        ({"WANDB_API_KEY": "k", "WANDB_BRIDGE_PUBLISH_DASHBOARD": "false"}, False),
        ({"WANDB_BRIDGE_PUBLISH_DASHBOARD": "true"}, True),
    ],
)
def test_the_bridge_publishes_the_dashboard_when_the_run_goes_online(env, wanted):
    assert dashboard.publish_wanted(BridgeConfig.from_env(env), RunConfig.from_env(env)) is wanted


def wanted(env):
    return dashboard.publish_wanted(BridgeConfig.from_env(env), RunConfig.from_env(env))


def test_a_bad_publish_setting_names_the_variable():
    with pytest.raises(ConfigError, match="WANDB_BRIDGE_PUBLISH_DASHBOARD must be one of auto, 1, true"):
        wanted({"WANDB_BRIDGE_PUBLISH_DASHBOARD": "sometimes"})
    assert wanted({"WANDB_BRIDGE_PUBLISH_DASHBOARD": " Yes "}) is True
    assert wanted({"WANDB_API_KEY": "k", "WANDB_BRIDGE_PUBLISH_DASHBOARD": "AUTO"}) is True


def test_publish_once_saves_one_workspace_per_deployment_and_never_raises(tmp_path, caplog):
    calls = []

    def fake_publish():
        calls.append(1)
        return "https://wandb.ai/team/ai-diary?nw=abc"

    assert dashboard.publish_once(tmp_path, fake_publish) == "https://wandb.ai/team/ai-diary?nw=abc"
    assert dashboard.publish_once(tmp_path, fake_publish) == "https://wandb.ai/team/ai-diary?nw=abc"  # a restart
    assert calls == [1]

    def failing():
        raise RuntimeError("no network")

    other = tmp_path / "other"
    with caplog.at_level("WARNING"):
        assert dashboard.publish_once(other, failing) is None
    assert not (other / dashboard.MARKER).exists()  # retried at the next start
    assert any("not saved" in m and "no network" in m for m in caplog.messages)
