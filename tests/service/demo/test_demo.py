"""The `make demo` driver (app/demo*.py): a real end-to-end smoke run per topology, plus its parts.

The smoke runs ``python -m app.demo`` as ``make demo`` does, with a small DEMO_REQUESTS and short windows, in a
temporary DEMO_OUT, then reads what it left on disk back: the offline W&B run, the collector's files, the report.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app import demo
from app.demo._alerts import demo_rules
from app.demo._config import MARKER, DemoConfig, DemoConfigError, prepare_out
from app.demo._sinks import scan
from app.demo._summary import traffic_table
from app.demo._traffic import STEADY_MIX, Traffic
from otel_wandb import runfile
from tests.support import ROOT as REPO

CANARY = "demo-canary-7f3a9c"


def run_demo(
    out: Path, topology: str, requests: int = 40, cwd: Path = REPO, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "WANDB_API_KEY", "WANDB_MODE", "OPENAI_BASE_URL")
        and not k.startswith(("OTEL_", "DEMO_"))
    }
    env.update(
        {
            "DEMO_OUT": str(out),
            "DEMO_REQUESTS": str(requests),
            "DEMO_TOPOLOGY": topology,
            "DEMO_CANARY": CANARY,
            "DEMO_ALERT_WINDOW_S": "6",
            "DEMO_EXPORT_INTERVAL_S": "1",
            "DEMO_ALERT_TIMEOUT_S": "45",
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "app.demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.integration  # python -m app.demo: the local LLM, gunicorn, the collector and the bridge
@pytest.mark.parametrize("topology", ["inprocess", "collector"])
def test_demo_end_to_end(tmp_path, topology):
    out, cwd = tmp_path / "demo-out", tmp_path / "cwd"
    cwd.mkdir()
    res = run_demo(out, topology, cwd=cwd)
    text = res.stdout
    assert res.returncode == 0, f"demo failed:\n{text[-6000:]}\n{res.stderr[-3000:]}"
    assert "demo completed: every phase passed" in text
    assert "local OpenAI-compatible endpoint" in text and "WANDB_MODE=offline" in text
    assert ("full: service --OTLP--> collector" if topology == "collector" else "in-process:") in text

    sent = int(re.search(r"requests sent: (\d+)", text).group(1))
    assert sent >= 40
    assert re.search(r"POST /api/entries/\{id\}/ai/\w+ +\d+ +\d+ +[1-9]\d*", text), "no 5xx from the LLM burst"
    assert "fired yes, " in text and "resolved yes, " in text
    assert "canary found in 0 sinks" in text and "API tokens, user names and service secrets found in 0 sinks" in text
    assert int(re.search(r"the canary is in the database (\d+) times", text).group(1)) > 0

    # The one W&B run read back from disk counts exactly what the demo sent and recorded the alert both ways.
    runs = runfile.find_runs(out / "wandb")
    assert len(runs) == 1
    run = runfile.read_run(runs[0])
    assert run.series("http/requests_total")[-1] == sent
    titles = [a["title"] for a in run.alerts]
    assert "[FIRING] High Error Rate" in titles and "[RESOLVED] High Error Rate" in titles
    assert f"wandb sync {runs[0]}" in text.replace(str(Path.cwd()) + "/", "")

    report = out / "report.html"
    assert report.stat().st_size > 1000 and str(report) in text
    # the live dashboard was named at start and served the run: its last view (saved before the processes
    # stopped) shows requests, never more than were sent, and went through the privacy scan with the other sinks
    url = re.search(r"^live dashboard at (http://127\.0\.0\.1:\d+/dashboard) ", text, re.M)
    assert url, text[:3000]
    shown = re.search(
        r"live dashboard \(served while the demo ran\): (\S+); its last view, (\d+) requests shown: ", text
    )
    assert shown and shown.group(1) == url.group(1), text[-4000:]
    assert 0 < int(shown.group(2)) <= sent
    assert 'data-total="requests"' in (out / "dashboard.html").read_text()
    checks = re.findall(r"^  (W&B http/requests_total|audit\.log [a-z._]+): (\d+) recorded / (\d+) sent", text, re.M)
    assert len(checks) == (9 if topology == "collector" else 1)
    assert all(int(seen) >= int(sent) for _, seen, sent in checks), checks
    # the tamper-evident chain holds every audit event (and, with the collector, every audit.log link)
    verified = re.search(r"^  ai-diary-audit verify: OK: (\d+) records, chain intact.*$", text, re.M)
    assert verified and int(verified.group(1)) > 0, text[-3000:]
    if topology == "collector":
        assert re.search(r"all \d+ audit\.log links present", verified.group(0))
    if topology == "collector":
        audit = (out / "logs" / "audit.log").read_text()
        assert "entry.create" in audit and CANARY not in audit
        assert (out / "logs" / "combined.log").stat().st_size > 0
        assert (out / "report-logs.html").exists()
    # Nothing of the run lands in the working directory (the collector and the bridge inherit it), and the
    # entries themselves are in the database (so the canary really was sent).
    assert list(cwd.iterdir()) == []
    assert CANARY.encode() in b"".join(p.read_bytes() for p in (out / "db").iterdir())


@pytest.mark.integration  # python -m app.demo
def test_a_failing_phase_fails_the_demo_loudly(tmp_path):
    """The service refuses a bad setting: the demo stops everything, says why and exits 1 (no hang, no traceback
    of its own)."""
    res = run_demo(tmp_path / "out", "inprocess", AI_MAX_OUTPUT_TOKENS="0")
    assert res.returncode == 1
    assert "DEMO FAILED" in res.stdout and "AI_MAX_OUTPUT_TOKENS" in res.stdout
    assert "service exited with 3" in res.stdout and "local-llm exit 0" in res.stdout
    assert "Traceback" not in res.stderr


def test_scan_finds_the_canary_in_every_kind_of_sink(tmp_path):
    for sub in ("logs", "wandb/wandb/offline-run-1", "queue", "stdout", "db"):
        (tmp_path / sub).mkdir(parents=True)
    canary = "canary-ünïcode-42"
    (tmp_path / "logs" / "combined.log").write_text(f'{{"body": "entry {canary}"}}\n', encoding="utf-8")
    (tmp_path / "wandb/wandb/offline-run-1" / "files.json").write_text(json.dumps({"t": canary}))  # \\u escaped
    (tmp_path / "queue" / "batch.gz").write_bytes(gzip.compress(canary.encode()))
    (tmp_path / "stdout" / "service.log").write_text("clean\n")
    (tmp_path / "db" / "ai-diary.sqlite3").write_text(canary)  # the database stores entries by design
    others = {"API token": ["tok-secret-1"], "user name": ["Ada 1f2e"]}
    result = scan(tmp_path, canary, others)
    assert result.sinks_with_canary == ["W&B run files", "collector log files", "collector queue storage"]
    assert result.sinks_with_other == []
    (tmp_path / "stdout" / "service.log").write_text("Authorization: Bearer tok-secret-1\n")
    result = scan(tmp_path, canary, others)
    assert result.sinks_with_other == ["process stdout captures"] and result.hits[-1].secret == "API token"


def test_traffic_against_the_real_app(app):
    """The driver against the real Flask app (WSGI transport): no unexpected outcome, bad input gets 4xx."""
    traffic = Traffic("http://demo.test", users=2, canary=CANARY, seed=3, transport=httpx.WSGITransport(app=app))
    traffic.register()
    ran = traffic.run(60, STEADY_MIX)
    tally = traffic.tally
    assert ran == 60 and tally.total == 62
    assert tally.unexpected_count == 0, tally.unexpected
    assert tally.statuses[201] >= 2 and sum(n for (ep, c), n in tally.counts.items() if c == "4xx") > 0
    assert "POST /api/users" in traffic_table(tally)
    # The classification can fail: a 200 where bad input expects 4xx is flagged.
    traffic.sessions[0]._send("GET /healthz", "GET", "/healthz", bad=True)
    assert tally.unexpected_count == 1 and "bad input got 200" in tally.unexpected[0]
    traffic.close()


def test_config_errors_name_the_variable(monkeypatch, capsys):
    for env, name in (
        ({"DEMO_REQUESTS": "lots"}, "DEMO_REQUESTS"),
        ({"DEMO_TOPOLOGY": "k8s"}, "DEMO_TOPOLOGY"),
        ({"DEMO_CANARY": "abc"}, "DEMO_CANARY"),
        ({"DEMO_ALERTS": "maybe"}, "DEMO_ALERTS"),
        ({"DEMO_LLM": "openai"}, "OPENAI_API_KEY"),
    ):
        with pytest.raises(DemoConfigError, match=name):
            DemoConfig.from_env(env)
    monkeypatch.setenv("DEMO_REQUESTS", "5")
    assert demo.main([]) == 2
    assert "DEMO_REQUESTS must be an integer between 20" in capsys.readouterr().err


def test_defaults_and_output_folder(tmp_path):
    cfg = DemoConfig.from_env({"DEMO_OUT": str(tmp_path / "o")})
    assert (cfg.requests, cfg.local_llm, cfg.wandb_mode, cfg.alerts) == (600, True, "offline", True)
    assert cfg.canary.startswith("CANARY-") and not cfg.canary_given
    assert DemoConfig.from_env({"OPENAI_API_KEY": "k", "WANDB_API_KEY": "w"}).local_llm is False
    assert DemoConfig.from_env({"WANDB_API_KEY": "w"}).wandb_mode == "online"
    prepare_out(cfg.out)
    (cfg.out / "logs" / "old.log").write_text("previous run")
    prepare_out(cfg.out)  # a previous demo's folder is wiped
    assert not (cfg.out / "logs" / "old.log").exists() and (cfg.out / MARKER).exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(DemoConfigError, match="not made by the demo"):
        prepare_out(other)
    assert (other / "thesis.tex").exists()


def test_demo_rules_shorten_windows_and_keep_the_rules(tmp_path):
    cfg = DemoConfig.from_env({"DEMO_ALERT_WINDOW_S": "12"})
    rules = {r["name"]: r for r in demo_rules(cfg)["rules"]}
    assert rules["High Error Rate"]["window"] == "12s" and rules["High Error Rate"]["threshold"] == 0.05
    assert rules["High Error Rate"]["min_samples"] <= 10 and rules["High Error Rate"]["wait"] == 900
    from otel_wandb.alerts._rules import parse_config

    assert parse_config(demo_rules(cfg)).enabled_rules  # still a valid rules file
