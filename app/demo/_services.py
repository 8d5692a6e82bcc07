"""Start the demo's processes: the local LLM endpoint, the service under gunicorn, and (full topology) the
collector and the W&B bridge. Every child writes only under DEMO_OUT."""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.demo._config import DASHBOARD_PORT, REPO, DemoConfig
from app.demo.procs import Proc, Procs, port_or_any
from app.demo.topology import wandb_files_env

log = logging.getLogger(__name__)

# Fault rates of the local LLM: a few failures in steady state (mostly absorbed by one retry), all-out during the
# alert burst. With OPENAI_MAX_RETRIES=1 an AI call fails when both attempts fail.
STEADY_FAULTS = {
    "LOCAL_LLM_FAIL_429_RATE": "0.06",
    "LOCAL_LLM_FAIL_500_RATE": "0.06",
    "LOCAL_LLM_TIMEOUT_RATE": "0.005",
    "LOCAL_LLM_TIMEOUT_SLEEP_S": "6",
}
BURST_FAULTS = {
    "LOCAL_LLM_FAIL_429_RATE": "0.0",
    "LOCAL_LLM_FAIL_500_RATE": "0.95",
    "LOCAL_LLM_TIMEOUT_RATE": "0.0",
    "LOCAL_LLM_TIMEOUT_SLEEP_S": "6",
}
OPENAI_TIMEOUT_S = "3"


def wandb_env(cfg: DemoConfig) -> dict[str, str]:
    """W&B settings keeping every file under DEMO_OUT/wandb (config and cache dirs too)."""
    return {
        **wandb_files_env(cfg.out / "wandb", cfg.wandb_mode),
        "WANDB_EXPORT_INTERVAL": f"{cfg.export_interval_s:g}",
    }


def base_env(cfg: DemoConfig, parent: Mapping[str, str]) -> dict[str, str]:
    """The environment every child starts from: the parent's, with the demo's embedded defaults."""
    env = dict(parent)
    env.setdefault("WANDB_PROJECT", "ai-diary-demo")
    env.update(wandb_env(cfg))
    # XDG_CACHE_HOME: wandb-core's debug logs (~/.cache/wandb/logs); TMPDIR: wandb's media and table staging.
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "ALERTS_STATE_FILE": str(cfg.out / "alerts-state.json"),
            "XDG_CACHE_HOME": str(cfg.out / "cache"),
            "TMPDIR": str(cfg.out / "tmp"),
        }
    )
    if cfg.local_llm:
        env.pop("OPENAI_API_KEY", None)
    return env


@dataclass
class Llm:
    proc: Proc | None
    base_url: str
    port: int = 0
    restarts: int = 0
    faults: dict[str, str] = field(default_factory=dict)


def start_llm(procs: Procs, cfg: DemoConfig, faults: Mapping[str, str], port: int = 0, name: str = "local-llm") -> Llm:
    env = {"LOCAL_LLM_LATENCY_MS": f"{cfg.llm_latency_ms:g}", "LOCAL_LLM_SEED": str(cfg.seed), **faults}
    proc = procs.python(name, "app.local_llm", "--host", "127.0.0.1", "--port", str(port), env=env)
    line = proc.wait_for_output(r"\{[^\n]*\"base_url\"[^\n]*\}", timeout=20).group(0)
    info = json.loads(line)
    proc.wait_http(info["base_url"][: -len("/v1")] + "/healthz", timeout=10)
    return Llm(proc, info["base_url"], int(info["port"]), faults=dict(faults))


def restart_llm(procs: Procs, cfg: DemoConfig, llm: Llm, faults: Mapping[str, str]) -> Llm:
    """Swap the LLM endpoint's fault rates: stop it and start it again on the same port (the service's
    OPENAI_BASE_URL stays valid; the few calls during the swap fail like any connection error)."""
    if llm.proc is None:
        return llm
    procs.stop(llm.proc, timeout=10)
    new = start_llm(procs, cfg, faults, port=llm.port, name=f"local-llm-{llm.restarts + 1}")
    new.restarts = llm.restarts + 1
    return new


def workers(cfg: DemoConfig, topology: str) -> int:
    """gunicorn workers: 2 behind the collector; 1 in-process, where each worker would write its own W&B run."""
    return cfg.workers or (2 if topology == "collector" else 1)


def service_secrets(cfg: DemoConfig, parent: Mapping[str, str]) -> dict[str, str]:
    """Per-run secrets of the service (the privacy scan greps the sinks for them too)."""
    found = {"PSEUDONYM_SECRET": secrets.token_hex(32)}
    found["OPENAI_API_KEY"] = f"sk-local-{secrets.token_hex(12)}" if cfg.local_llm else parent.get("OPENAI_API_KEY", "")
    return found


def service_env(
    cfg: DemoConfig, topology: str, llm: Llm, otlp_endpoint: str | None, secret_env: Mapping[str, str]
) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite:///{cfg.out / 'db' / 'ai-diary.sqlite3'}",
        "PSEUDONYM_SECRET": secret_env["PSEUDONYM_SECRET"],
        "DEPLOYMENT_ENVIRONMENT": "demo",
        "OPENAI_TIMEOUT": OPENAI_TIMEOUT_S,
        "OPENAI_MAX_RETRIES": "1",
        "OTEL_SERVICE_NAME": "ai-diary",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
        "OTEL_METRIC_EXPORT_INTERVAL": str(int(cfg.export_interval_s * 1000)),
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_BLRP_SCHEDULE_DELAY": "1000",
        "GUNICORN_BIND_HOST": "127.0.0.1",
        "PORT": "0",  # gunicorn binds a free port and logs it
        "GUNICORN_THREADS": "4",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "WEB_CONCURRENCY": str(workers(cfg, topology)),
    }
    if cfg.local_llm:
        env.update({"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": secret_env["OPENAI_API_KEY"]})
    signals = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER")
    if topology == "collector":
        env.update(dict.fromkeys(signals, "otlp"))
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint or "", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    else:
        env.update(dict.fromkeys(signals, "wandb"))
        if workers(cfg, topology) == 1:  # one process, one run: it serves its own live dashboard
            env["WANDB_EXPORT_DASHBOARD_PORT"] = str(port_or_any(DASHBOARD_PORT))
    return env


def start_service(
    procs: Procs, cfg: DemoConfig, topology: str, llm: Llm, otlp_endpoint: str | None, secret_env: Mapping[str, str]
) -> tuple[Proc, str]:
    argv = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"), "app:create_app()"]
    proc = procs.start("service", argv, env=service_env(cfg, topology, llm, otlp_endpoint, secret_env), cwd=REPO)
    port = int(proc.wait_for_output(r"Listening at: http://127\.0\.0\.1:(\d+)", timeout=30).group(1))
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(base + "/readyz", timeout=60)
    return proc, base


def run_dirs(wandb_dir: Path) -> list[Path]:
    """The run folders wandb made (``run-*`` offline, ``offline-run-*``), oldest first."""
    root = wandb_dir / "wandb"
    if not root.exists():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and "run-" in p.name), key=lambda p: p.name)


def llm_stats(llm: Llm) -> Counter[str]:
    try:
        return Counter(httpx.get(llm.base_url[: -len("/v1")] + "/stats", timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return Counter()
