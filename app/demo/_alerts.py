"""The alert phase: local SMTP and webhook receivers, a short-window copy of alerts.yaml under DEMO_OUT, a burst of
LLM failures that pushes the error rate over 5 % until ``High Error Rate`` fires, then recovery until it resolves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from app.demo._config import REPO, DemoConfig
from app.demo._services import BURST_FAULTS, STEADY_FAULTS, Llm, llm_stats, restart_llm
from app.demo._summary import Outcome, say
from app.demo._traffic import AI_HEAVY_MIX, HEALTHY_MIX, Traffic
from app.demo.procs import DemoError, Procs
from app.demo.receivers import SmtpReceiver, WebhookReceiver

log = logging.getLogger(__name__)

RULE = "High Error Rate"
BURST_SHARE, RECOVERY_SHARE = 0.15, 0.25
MIN_RATE = 4.0  # requests/s while pacing, so every window holds enough samples


def budget(cfg: DemoConfig) -> int:
    return int(cfg.requests * BURST_SHARE) + int(cfg.requests * RECOVERY_SHARE)


def demo_rules(cfg: DemoConfig, source: Path = REPO / "alerts.yaml") -> dict[str, Any]:
    """The repository's rules with demo-sized windows: short windows, few samples, no reminders within the demo."""
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    for rule in data.get("rules", []):
        if "window" in rule:
            rule["window"] = f"{cfg.alert_window_s:g}s"
        if "min_samples" in rule:
            rule["min_samples"] = min(int(rule["min_samples"]), 10)
        if rule.get("wait"):
            rule["wait"] = 900  # fire once, resolve once: no reminders during a three-minute demo
    return data


class AlertPhase:
    def __init__(self, cfg: DemoConfig, procs: Procs) -> None:
        self.cfg, self.procs = cfg, procs
        self.fired, self.resolved = threading.Event(), threading.Event()
        self.received: list[str] = []
        self.counts: Counter[str] = Counter()  # alerts received per channel
        self.smtp: Any = None
        self.hooks: Any = None
        self.t0 = time.monotonic()  # demo start (receivers start first): the time base of every line
        self.marks: dict[str, float] = {}  # "burst" / "recovery" start, "fired" / "resolved" arrival

    # -- receivers -------------------------------------------------------------------------------------------
    def start_receivers(self) -> dict[str, str]:
        self.smtp = SmtpReceiver(on_message=self._on_mail).start()
        self.hooks = WebhookReceiver(on_request=self._on_hook).start()
        path = self.cfg.out / "alerts.yaml"
        path.write_text(
            "# written by app.demo: alerts.yaml with demo-sized windows\n"
            + yaml.safe_dump(demo_rules(self.cfg), sort_keys=False),
            encoding="utf-8",
        )
        return {
            "ALERTS_FILE": str(path),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "ALERT_EMAIL_FROM": "ai-diary-demo@localhost",
            "ALERT_EMAIL_TO": "oncall@example.test",
            "SLACK_WEBHOOK_URL": self.hooks.url("/slack"),
            "SMS_WEBHOOK_URL": self.hooks.url("/sms"),
            "SMS_TO": "+15550100",
            "ALERTS_CHANNEL_TIMEOUT": "5",
        }

    def _note(self, channel: str, title: str, text: str) -> None:
        at = time.monotonic() - self.t0
        first = text.strip().splitlines()[0] if text.strip() else ""
        line = f"[{channel:5}] +{at:5.1f}s {title} | {first[:110]}"
        self.received.append(line)
        self.counts[channel] += 1
        say(f"  alert received {line}")
        if RULE in title and "burst" in self.marks:  # a breach before the burst would not be the demo's
            if "RESOLVED" in title.upper() and "recovery" in self.marks:
                self.marks.setdefault("resolved", at)
                self.resolved.set()
            elif "RESOLVED" not in title.upper():
                self.marks.setdefault("fired", at)
                self.fired.set()

    def _on_mail(self, mail: Any) -> None:
        self._note("email", mail.subject.removeprefix("[ai-diary] "), mail.body)

    def _on_hook(self, req: Any) -> None:
        channel = "slack" if req.path.startswith("/slack") else "sms"
        text = req.text
        title = text.split("*")[1] if text.count("*") >= 2 else text.splitlines()[0] if text else ""
        self._note(channel, title, text.split("\n", 1)[-1])

    def stop_receivers(self, oc: Outcome) -> None:
        for receiver in (self.smtp, self.hooks):
            if receiver is not None:
                try:
                    receiver.stop()
                except Exception as exc:  # noqa: BLE001 - a receiver failing to stop must not hide the summary
                    log.warning("receiver stop failed: %s", exc)
        self.smtp = self.hooks = None
        oc.alert_lines = self.describe()

    def describe(self) -> list[str]:
        m = self.marks
        fired = (
            f"yes, {m['fired'] - m['burst']:.1f}s after the failure burst began"
            if "fired" in m and "burst" in m
            else "NO"
        )
        resolved = (
            f"yes, {m['resolved'] - m['recovery']:.1f}s after recovery began"
            if "resolved" in m and "recovery" in m
            else "NO"
        )
        lines = [
            f"rule {RULE!r} (error_rate > 5 % over {self.cfg.alert_window_s:g}s): fired {fired}; resolved {resolved}",
            f"timeline (seconds since the demo started): burst at +{m.get('burst', 0):.1f}s, "
            f"recovery at +{m.get('recovery', 0):.1f}s",
        ]
        lines.append(
            "deliveries: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none")
            + f"; receivers: SMTP 127.0.0.1 (aiosmtpd), webhooks /slack and /sms; rules in "
            f"{self.cfg.out / 'alerts.yaml'}"
        )
        lines.extend(self.received[:30])
        return lines

    # -- the phase -------------------------------------------------------------------------------------------
    def run(self, traffic: Traffic, llm: Llm, bar: Any, oc: Outcome) -> Llm:
        cfg = self.cfg
        tick = lambda: bar.update(1)  # noqa: E731
        burst = int(cfg.requests * BURST_SHARE)
        recovery = int(cfg.requests * RECOVERY_SHARE)
        # Pace so the burst spans a couple of export intervals and the recovery a whole window.
        burst_rate = max(MIN_RATE, burst / (2 * cfg.export_interval_s + 2))
        recovery_rate = max(MIN_RATE, recovery / (cfg.alert_window_s + 2 * cfg.export_interval_s + 4))

        say(f"\nalert phase: the LLM endpoint now fails 95 % of calls; AI-heavy traffic until {RULE!r} fires")
        oc.llm_stats.update(llm_stats(llm))
        llm = restart_llm(self.procs, cfg, llm, BURST_FAULTS)
        self.marks["burst"] = time.monotonic() - self.t0
        n = traffic.run(burst, AI_HEAVY_MIX, on_request=tick, rate=burst_rate)
        n += traffic.run(
            None,
            AI_HEAVY_MIX,
            on_request=tick,
            until=self.fired,
            rate=burst_rate,
            deadline=time.monotonic() + cfg.alert_timeout_s,
        )
        oc.phase_requests["failure burst"] = n
        if not self.fired.is_set():
            raise DemoError(
                f"alerts: {RULE!r} did not fire within {cfg.alert_timeout_s:g}s of the failure burst "
                f"(see {self.procs.out_dir / 'stdout'})"
            )

        say(f"\nalert phase: the LLM endpoint is healthy again; steady traffic until {RULE!r} resolves")
        oc.llm_stats.update(llm_stats(llm))
        llm = restart_llm(self.procs, cfg, llm, STEADY_FAULTS)
        self.marks["recovery"] = time.monotonic() - self.t0
        n = traffic.run(recovery, HEALTHY_MIX, on_request=tick, rate=recovery_rate, until=self.resolved)
        n += traffic.run(
            None,
            HEALTHY_MIX,
            on_request=tick,
            until=self.resolved,
            rate=recovery_rate,
            deadline=time.monotonic() + cfg.alert_timeout_s,
        )
        oc.phase_requests["recovery"] = n
        if not self.resolved.is_set():
            raise DemoError(f"alerts: {RULE!r} did not resolve within {cfg.alert_timeout_s:g}s of recovery")
        return llm
