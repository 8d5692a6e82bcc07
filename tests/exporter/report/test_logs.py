"""ai-diary-report from the collector's log files (rotated + gz backups): figures equal the records'."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from otel_wandb.report import resolve, write_report
from otel_wandb.logfiles._files import Entry, to_line

T0 = 1_796_000_000 * 10**9
S = 10**9


def rec(sec: int, sev: int, body: str, scope: str = "app", **attrs) -> Entry:
    return Entry(T0 + sec * S, sev, {9: "INFO", 13: "WARN", 17: "ERROR"}[sev], body, scope,
                 attributes=attrs, resource={"service.name": "ai-diary"})


def totals(html: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'data-total="([^"]+)" data-value="([^"]+)"', html)}


def charts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', html)}


def test_report_from_log_files_with_http_and_ai_attributes(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    access = [rec(i * 7, 9 if i % 5 else 17, f"request {i}", **{"http.route": "/api/entries",
                                                                 "http.response.status_code": 200 if i % 5 else 503,
                                                                 "http.server.request.duration": 0.010 * (i + 1)})
              for i in range(30)]
    ai = [rec(i * 11, 9, "ai call", **{"gen_ai.request.model": "gpt-4o-mini", "app.feature": "summarize",
                                       "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20 + i,
                                       "app.ai.cost_usd": 0.001}) for i in range(10)]
    audit = [rec(5, 9, "audit entry.create", "audit", **{"audit.action": "entry.create", "audit.seq": 1}),
             rec(6, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.seq": 2})]
    with gzip.open(d / "combined-2026-11-29T10-00-00.000-size.log.gz", "wt") as fh:
        fh.write(to_line(access[:10]) + "\n")
    (d / "combined-2026-11-29T10-30-00.000-size.log").write_text(to_line(access[10:20] + ai) + "\n")
    (d / "combined.log").write_text(to_line(access[20:] + audit) + "\n" + "garbage\n")
    assert resolve(d) == ("logs", d)
    html = write_report(d, tmp_path / "logs.html").read_text()
    t = totals(html)
    assert t["requests"] == 30 and t["errors"] == 6
    assert t["tokens"] == sum(100 + 20 + i for i in range(10))
    assert abs(t["cost_usd"] - 0.010) < 1e-12
    assert t["log_records"] == 30 + 10 + 2
    c = charts(html)
    assert c["request_rate"] > 0 and c["latency"] > 0 and c["tokens_by_model"] > 0 and c["error_groups"] == 1
    assert c["audit_actions"] == 2
    assert ">not in the log files" in html  # only the alerts section (alerts live in the W&B run)
    assert html.count(">not in the log files") == 1


def test_report_from_plain_application_logs_says_what_is_missing(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text(to_line([rec(0, 9, "started"), rec(1, 17, "db timeout after 3000 ms"),
                                             rec(2, 17, "db timeout after 4000 ms")]) + "\n")
    html = write_report(d, tmp_path / "r.html").read_text()
    assert totals(html)["requests"] == 0 and totals(html)["log_records"] == 3
    assert "no log record carries http.response.status_code" in html
    assert html.count(">not in the log files") == 4  # requests, latency, AI, alerts
    assert charts(html)["error_groups"] == 1 and "db timeout after &lt;n&gt; ms" in html
