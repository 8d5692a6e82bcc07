"""The demo's phases in order (``DemoRun``) and its ``main`` (see the package docstring)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator

from tqdm import tqdm

from app.demo import _alerts as demo_alerts
from app.demo import _sinks as demo_sinks
from app.demo import _stack as demo_stack
from app.demo._config import DASHBOARD_LINE, DemoConfig, DemoConfigError, prepare_out
from app.demo._services import STEADY_FAULTS, Llm, base_env, llm_stats, service_secrets, start_llm, start_service
from app.demo._summary import Outcome, banner, canary_line, cross_checks, say, summary
from app.demo._traffic import STEADY_MIX, Traffic
from app.demo.procs import DemoError, Procs
from otel_wandb.config import env_str

log = logging.getLogger("app.demo")


class DemoRun:
    def __init__(self, cfg: DemoConfig, topology: str) -> None:
        self.cfg, self.topology = cfg, topology
        self.procs = Procs(cfg.out, base_env(cfg, cfg.env))
        self.oc = Outcome(topology=topology)
        self.traffic: Traffic | None = None
        self.llm: Llm | None = None
        self.stack: demo_stack.Stack | None = None
        self.alerts: demo_alerts.AlertPhase | None = None
        self.base_url = ""
        self.secrets = service_secrets(cfg, cfg.env)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.oc.phase_seconds[name] = self.oc.phase_seconds.get(name, 0.0) + time.monotonic() - t0

    def llm_text(self) -> str:
        if self.cfg.local_llm:
            why = "no OPENAI_API_KEY" if not env_str(self.cfg.env, "OPENAI_API_KEY") else "DEMO_LLM=local"
            return (
                f"local OpenAI-compatible endpoint (app.local_llm; {why}): ~{self.cfg.llm_latency_ms:g} ms "
                f"latency, injected 429/500/timeouts"
            )
        base_url = env_str(self.cfg.env, "OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return f"OpenAI API at {base_url} (OPENAI_API_KEY set)"

    # -- phases ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self.phase("start"):
            if self.cfg.alerts and self.cfg.local_llm:  # failures are injected through the local endpoint
                try:
                    alerts = demo_alerts.AlertPhase(self.cfg, self.procs)
                    self.procs.base_env.update(alerts.start_receivers())
                    self.alerts = alerts
                except ImportError as exc:  # aiosmtpd is a dev dependency (requirements.lock installs it)
                    self.oc.notes.append(f"alert phase skipped: {exc}")
            if self.cfg.local_llm:
                self.llm = start_llm(self.procs, self.cfg, STEADY_FAULTS)
            else:
                self.llm = Llm(None, env_str(self.cfg.env, "OPENAI_BASE_URL"))
            self.stack = demo_stack.start(self.procs, self.cfg, self.topology)
            _, self.base_url = start_service(
                self.procs, self.cfg, self.topology, self.llm, self.stack.otlp_endpoint, self.secrets
            )
            say(f"service ready at {self.base_url} ({self.procs.started[-1].log_path.name} has its output)")
            self.oc.dashboard_url = self.stack.dashboard_url or self._service_dashboard()
            if self.oc.dashboard_url:
                say(f"live dashboard at {self.oc.dashboard_url} (the W&B run as it happens; open it while it runs)")

    def _service_dashboard(self) -> str:
        """The in-process topology's dashboard URL, from the service's log (one worker serves it); "" if none."""
        if self.topology == "collector":
            return ""
        service = self.procs.started[-1]
        try:
            return service.wait_for_output(DASHBOARD_LINE, timeout=10).group(1)
        except DemoError as exc:
            self.oc.notes.append(f"no live dashboard: {exc}")
            return ""

    def drive(self) -> None:
        cfg = self.cfg
        alert_budget = demo_alerts.budget(cfg) if self.alerts else 0
        steady = max(1, cfg.requests - cfg.users - alert_budget)
        with tqdm(
            total=cfg.requests, desc="requests", unit="req", disable=None, mininterval=0.5, dynamic_ncols=True
        ) as bar:
            say(
                f"traffic: {cfg.users} users register, then {steady} mixed requests (create/list/get/patch/"
                "delete entries, summarize/reflect/mood, bad input)"
            )
            with self.phase("traffic"):
                self.traffic = Traffic(self.base_url, users=cfg.users, canary=cfg.canary, seed=cfg.seed)
                self.traffic.register()
                bar.update(cfg.users)
                n = self.traffic.run(steady, STEADY_MIX, on_request=lambda: bar.update(1))
            self.oc.phase_requests["register"] = cfg.users
            self.oc.phase_requests["steady"] = n
            if alert_budget:
                with self.phase("alerts"):
                    assert self.alerts is not None and self.llm is not None  # start() set both (alert_budget > 0)
                    self.llm = self.alerts.run(self.traffic, self.llm, bar, self.oc)
            elif cfg.alerts and not cfg.local_llm:
                self.oc.notes.append(
                    "alert phase skipped: it injects failures through the local LLM endpoint "
                    "(unset OPENAI_API_KEY or set DEMO_LLM=local)"
                )
            left = cfg.requests - self.traffic.tally.total
            if left > 0:  # the alert resolved before its share was used: send the rest as steady traffic
                with self.phase("traffic"):
                    self.oc.phase_requests["steady (rest)"] = self.traffic.run(
                        left, STEADY_MIX, on_request=lambda: bar.update(1)
                    )

    def stop(self) -> None:
        with self.phase("stop"):
            if self.llm and self.llm.proc:
                self.oc.llm_stats.update(llm_stats(self.llm))
            if self.traffic:
                self.traffic.close()
            if self.oc.dashboard_url:  # its last view, before the process serving it stops
                saved = demo_stack.save_dashboard(self.oc.dashboard_url, self.cfg.out / "dashboard.html")
                self.oc.dashboard, self.oc.dashboard_requests = saved
            self.oc.exit_codes = self.procs.stop_all(timeout=30, first=("service", "collector", "wandb-bridge"))
            if self.alerts:
                self.alerts.stop_receivers(self.oc)
        for proc in self.procs.started:
            if proc.killed:
                self.oc.failures.append(f"{proc.name} did not stop within 30s after SIGTERM and was killed")
        for name, code in self.oc.exit_codes.items():
            if code not in (0, None) and not name.startswith("local-llm"):
                self.oc.failures.append(f"{name} exited with {code} (see {self.cfg.out / 'stdout' / name}.log)")

    def finish(self) -> None:
        with self.phase("report"):
            self.oc.run_dirs = demo_stack.run_dirs(self.cfg.out / "wandb")
            self.oc.run_lines, seen = demo_stack.describe_runs(self.oc.run_dirs)
            self.oc.log_files = demo_stack.log_files(self.cfg.out / "logs")
            if self.topology == "collector":
                sent = self.traffic.tally.total if self.traffic else 0
                self.oc.rotation = demo_stack.rotation_line(self.cfg.out / "logs", sent)
            if self.traffic:
                audit = demo_stack.audit_counts(self.cfg.out / "logs")
                self.oc.checks = cross_checks(self.traffic.tally, audit, seen)
                self.oc.failures.extend(f"cross-check: {c}" for c in self.oc.checks if c.endswith("MISSING"))
                ok, line = demo_stack.audit_verify(
                    self.cfg.out / "db" / "ai-diary.sqlite3",
                    self.cfg.out / "logs" if self.topology == "collector" else None,
                )
                self.oc.checks.append(f"ai-diary-audit verify: {line}")
                if not ok:
                    self.oc.failures.append(f"audit chain: {line}")
            self.oc.stdout_files = sorted((self.cfg.out / "stdout").glob("*.log"))
            self.oc.notes.extend(demo_stack.child_problems(self.oc.stdout_files))
            try:
                self.oc.reports = demo_stack.write_report(self.cfg, self.topology, self.oc)
            except DemoError as exc:
                self.oc.failures.append(str(exc))
            if self.topology == "collector" and not self.oc.log_files:
                self.oc.failures.append(f"the collector wrote no log files under {self.cfg.out / 'logs'}")
            if not self.oc.run_dirs:
                self.oc.failures.append(f"no W&B run under {self.cfg.out / 'wandb'}")
        with self.phase("privacy"):
            others = {
                "API token": self.traffic.tokens if self.traffic else [],
                "user name": self.traffic.names if self.traffic else [],
                "service secret": [v for v in self.secrets.values() if v],
            }
            extra = {
                "HTML reports": self.oc.reports,
                "live dashboard": [self.oc.dashboard] if self.oc.dashboard else [],
            }
            self.oc.scan = demo_sinks.scan(self.cfg.out, self.cfg.canary, others, extra)
            if self.oc.scan.hits:
                self.oc.failures.append("privacy: " + canary_line(self.cfg, self.oc.scan).splitlines()[0])
            if self.traffic and self.traffic.tally.total and not self.oc.scan.control_hits:
                self.oc.failures.append(
                    "privacy: the canary is not even in the database, so the scan proves "
                    "nothing (were entries written?)"
                )

    def execute(self) -> int:
        say(banner(self.cfg, self.topology, self.llm_text()))
        self.oc.llm_text = self.llm_text()
        try:
            self.start()
            self.drive()
        except DemoError as exc:
            self.oc.failures.append(str(exc))
        except Exception as exc:  # a bug in a part: report it with the rest of the summary, never hang
            log.exception("demo phase crashed")
            self.oc.failures.append(f"unexpected {type(exc).__name__}: {exc} (traceback above)")
        except KeyboardInterrupt:
            if self.traffic:
                self.traffic.aborted.set()
            self.oc.failures.append("interrupted (Ctrl-C or SIGTERM): stopped everything")
        finally:
            self.stop()
        if self.traffic and self.traffic.tally.unexpected_count:
            self.oc.failures.append(f"{self.traffic.tally.unexpected_count} unexpected responses (listed above)")
        self.finish()
        tally = self.traffic.tally if self.traffic else Traffic("", users=0, canary="", seed=0).tally
        say(summary(self.cfg, tally, self.oc))
        return 1 if self.oc.failures else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        say(sys.modules["app.demo"].__doc__ or "")
        return 0
    signal.signal(signal.SIGTERM, _terminate)  # a SIGTERM stops the children too, like Ctrl-C
    try:
        cfg = DemoConfig.from_env()
        topology = cfg.resolve_topology()
        prepare_out(cfg.out)
    except DemoConfigError as exc:
        say(f"demo: {exc}", sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return DemoRun(cfg, topology).execute()


if __name__ == "__main__":
    raise SystemExit(main())
