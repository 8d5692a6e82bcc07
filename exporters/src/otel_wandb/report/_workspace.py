"""The W&B dashboard as code: a pure spec (sections → panels → metric keys) and its ``wandb-workspaces`` build.

``spec()`` names only keys of the core's row grammar (``otel_wandb.core``): fixed keys, or a regular expression for
breakdowns whose values are only known at run time (``ai/cost_usd@gen_ai.request.model=<model>``). Tests check every
key against what the real :class:`otel_wandb.core.Aggregator` emits. ``build_workspace`` turns the spec into
``wandb_workspaces`` objects (imported lazily: ``pip install wandb-workspaces``); ``publish`` saves it (needs
``WANDB_API_KEY``; entity/project from ``WANDB_ENTITY`` / ``WANDB_PROJECT``). The bridge calls ``publish_once`` at
start when the run goes online (``WANDB_BRIDGE_PUBLISH_DASHBOARD=auto``): one saved workspace per deployment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from otel_wandb.config import BridgeConfig, RunConfig

logger = logging.getLogger(__name__)

STEP = "interval/time"
DEFAULT_NAME = "ai-diary observability"
LINE, TABLE, MARKDOWN = "line", "table", "markdown"


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: str = LINE
    keys: tuple[str, ...] = ()  # exact row keys (or table keys for TABLE)
    regex: str | None = None  # for breakdowns: matched against row keys
    text: str = ""  # MARKDOWN only


@dataclass(frozen=True)
class SectionSpec:
    name: str
    panels: tuple[PanelSpec, ...]


def _by(stat: str, attr: str) -> str:
    return "^" + stat.replace(".", r"\.") + "@" + attr.replace(".", r"\.") + "=.+$"


def spec() -> tuple[SectionSpec, ...]:
    return (
        SectionSpec(
            "Requests",
            (
                PanelSpec("Requests and errors per interval", keys=("http/requests", "http/errors")),
                PanelSpec("Requests per route", regex=_by("http/requests", "http.route")),
                PanelSpec("Requests per status class", regex=_by("http/requests", "status_class")),
                PanelSpec("Requests per method", regex=_by("http/requests", "http.request.method")),
                PanelSpec("Running totals", keys=("http/requests_total", "http/errors_total")),
            ),
        ),
        SectionSpec(
            "Latency",
            (
                PanelSpec("Server latency p50 / p95 / p99 (ms)", keys=("http/p50_ms", "http/p95_ms", "http/p99_ms")),
                PanelSpec("p95 per route (ms)", regex=_by("http/p95_ms", "http.route")),
                PanelSpec("AI call latency (ms)", keys=("ai/p50_ms", "ai/p95_ms", "ai/p99_ms")),
                PanelSpec("AI p95 per model (ms)", regex=_by("ai/p95_ms", "gen_ai.request.model")),
            ),
        ),
        SectionSpec(
            "Errors",
            (
                PanelSpec("Error rate", keys=("http/error_rate",)),
                PanelSpec("Error rate per route", regex=_by("http/error_rate", "http.route")),
                PanelSpec(
                    "Error occurrences and groups", keys=("errors/occurrences", "errors/new_groups", "errors/groups")
                ),
                PanelSpec("Log records per severity", regex=_by("logs/count", "severity")),
                PanelSpec("Error groups", TABLE, keys=("tables/error_groups",)),
                PanelSpec("Recent errors", TABLE, keys=("tables/recent_errors",)),
                PanelSpec("Slowest traces", TABLE, keys=("tables/slowest_traces",)),
            ),
        ),
        SectionSpec(
            "AI usage & cost",
            (
                PanelSpec("Tokens per interval", keys=("ai/input_tokens", "ai/output_tokens", "ai/cached_tokens")),
                PanelSpec("Input tokens per model", regex=_by("ai/input_tokens", "gen_ai.request.model")),
                PanelSpec("Output tokens per model", regex=_by("ai/output_tokens", "gen_ai.request.model")),
                PanelSpec("Tokens per feature", regex=r"^ai/(input|output)_tokens@app\.feature=.+$"),
                PanelSpec("Cost per model (USD, app.ai.cost)", regex=_by("app.ai.cost/delta", "gen_ai.request.model")),
                PanelSpec("Cost per feature (USD, app.ai.cost)", regex=_by("app.ai.cost/delta", "app.feature")),
                PanelSpec("AI cost running total (USD)", keys=("ai/cost_usd_total", "app.ai.cost/total")),
                PanelSpec("AI calls and failures", keys=("ai/calls", "ai/errors")),
            ),
        ),
        SectionSpec(
            "Alerts",
            (
                PanelSpec("Error rate (rule: High Error Rate)", keys=("http/error_rate", "http/requests")),
                PanelSpec("p95 latency (rule: High Response Time)", keys=("http/p95_ms",)),
                PanelSpec("AI cost (rule: AI API Cost Spike)", keys=("app.ai.cost/delta", "ai/cost_usd_total")),
                PanelSpec("New error groups (rule: New Error Group)", keys=("errors/new_groups",)),
                PanelSpec(
                    "About alerts",
                    MARKDOWN,
                    text=(
                        "Alert rules live in `alerts.yaml`. Every fired or resolved alert is recorded with `run.alert` "
                        "(see the run's *Alerts*) and delivered to Slack / email / SMS by the pipeline. The offline "
                        "HTML report (`ai-diary-report`) draws the alert timeline."
                    ),
                ),
            ),
        ),
    )


def referenced_keys(sections: tuple[SectionSpec, ...] | None = None) -> tuple[set[str], set[str]]:
    """(exact keys, regexes) the spec references."""
    keys: set[str] = set()
    regexes: set[str] = set()
    for s in sections or spec():
        for p in s.panels:
            keys.update(p.keys)
            if p.regex:
                regexes.add(p.regex)
    return keys, regexes


def _import() -> tuple[ModuleType, ModuleType]:
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as exc:
        raise ImportError(
            "publishing the W&B dashboard needs `wandb-workspaces`: pip install wandb-workspaces"
        ) from exc
    return ws, wr


def build_panel(p: PanelSpec, wr: Any) -> Any:
    if p.kind == TABLE:
        return wr.WeavePanelSummaryTable(table_name=p.keys[0])
    if p.kind == MARKDOWN:
        return wr.MarkdownPanel(markdown=p.text)
    if p.regex:
        return wr.LinePlot(title=p.title, x=STEP, metric_regex=p.regex)
    return wr.LinePlot(title=p.title, x=STEP, y=list(p.keys))


def build_workspace(
    entity: str, project: str, name: str = DEFAULT_NAME, sections: tuple[SectionSpec, ...] | None = None
) -> Any:
    """The spec as a ``wandb_workspaces.workspaces.Workspace`` (not saved)."""
    ws, wr = _import()
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        settings=ws.WorkspaceSettings(x_axis=STEP),
        sections=[
            ws.Section(name=s.name, is_open=True, panels=[build_panel(p, wr) for p in s.panels])
            for s in sections or spec()
        ],
    )


def publish(
    entity: str | None = None, project: str | None = None, name: str = DEFAULT_NAME, run: RunConfig | None = None
) -> str:
    """Save the workspace to W&B and return its URL. Needs ``WANDB_API_KEY``."""
    run = run or RunConfig.from_env()
    if not run.has_api_key:
        raise RuntimeError("WANDB_API_KEY is not set: the dashboard can only be published online")
    project = project or run.project
    entity = entity or run.entity
    if not entity:
        import wandb

        entity = wandb.Api().default_entity
        if not entity:
            raise RuntimeError("no W&B entity: set WANDB_ENTITY")
    workspace = build_workspace(entity, project, name).save()
    logger.info("W&B dashboard saved: %s", workspace.url)
    return str(workspace.url)


MARKER = "dashboard-url.txt"


def publish_wanted(bridge: BridgeConfig, run: RunConfig) -> bool:
    """``WANDB_BRIDGE_PUBLISH_DASHBOARD``: ``auto`` publishes when the run goes online (an API key, and a mode
    that is not offline/disabled), ``true``/``false`` decide."""
    return run.online if bridge.publish_dashboard == "auto" else bridge.publish_dashboard == "true"


def publish_once(state_dir: str | os.PathLike[str], publish_fn: Any = None) -> str | None:
    """Save the workspace once per deployment: the URL goes to ``<state_dir>/dashboard-url.txt``, and while that
    file exists nothing is saved again (a restart never adds a second workspace). Never raises: a failure is one
    warning and returns None (retried at the next start)."""
    marker = Path(state_dir) / MARKER
    try:
        if marker.is_file():
            url = marker.read_text().strip()
            logger.info("W&B dashboard already saved: %s (delete %s to save it again)", url, marker)
            return url
        url = (publish_fn or publish)()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(url + "\n")
        return url
    except Exception as exc:  # noqa: BLE001 - the dashboard is a convenience, never a reason to stop
        logger.warning(
            "W&B dashboard not saved (%s: %s); it is retried at the next start, or run "
            "`ai-diary-report --publish-dashboard`",
            type(exc).__name__,
            exc,
        )
        return None


def check_keys(produced: set[str], sections: tuple[SectionSpec, ...] | None = None) -> list[str]:
    """Problems with the spec against the keys a run produced: exact keys never logged, regexes matching none."""
    import re

    keys, regexes = referenced_keys(sections)
    problems = [f"key {k!r} is not produced by the exporters" for k in sorted(keys - produced)]
    problems += [
        f"regex {rx!r} matches no produced key" for rx in sorted(regexes) if not any(re.search(rx, k) for k in produced)
    ]
    return problems
