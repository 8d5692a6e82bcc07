"""The demo's settings (DEMO_* env vars, validated with errors that name the variable) and its output folder."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from otel_wandb.config import ConfigError, env_choice, env_flag, env_number, environ

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_BINARY = REPO / "collector" / "_build" / "otelcol-ai-diary"
DASHBOARD_PORT = 8088  # the live dashboard's port when it is free (as in compose), else any free port
DASHBOARD_LINE = r"live dashboard at (http://[^\s\"]+)"  # what the bridge or the exporter pipeline logs
MARKER = ".ai-diary-demo"  # marks a folder the demo made, so a rerun may wipe it and nothing else

TOPOLOGIES = ("auto", "collector", "inprocess")


DemoConfigError = ConfigError  # the one configuration error type (otel_wandb.config): names the variable


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return env_number(env, name, default, lo=lo, hi=hi, kind=int)


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    return env_number(env, name, default, lo=lo, hi=hi)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    return env_flag(env, name, default)


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    requests: int
    canary: str
    canary_given: bool
    users: int
    workers: int | None
    topology: str
    alerts: bool
    alert_window_s: float
    alert_timeout_s: float
    export_interval_s: float
    llm_latency_ms: float
    local_llm: bool
    wandb_mode: str
    seed: int
    env: Mapping[str, str]  # the environment read: the demo's children inherit it
    log_level: str = "WARNING"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DemoConfig:
        env = environ() if env is None else env
        topology = env_choice(env, "DEMO_TOPOLOGY", "auto", TOPOLOGIES)
        canary = env.get("DEMO_CANARY", "")
        if canary and len(canary.strip()) < 8:
            raise DemoConfigError("DEMO_CANARY must be at least 8 characters, so a grep cannot match by chance")
        llm = env_choice(env, "DEMO_LLM", "auto", ("auto", "local", "openai"))
        if llm == "openai" and not env.get("OPENAI_API_KEY"):
            raise DemoConfigError("DEMO_LLM=openai needs OPENAI_API_KEY")
        wandb_mode = env.get("WANDB_MODE", "").strip() or ("online" if env.get("WANDB_API_KEY") else "offline")
        workers = _int(env, "DEMO_WORKERS", 0, 0, 16)
        return cls(
            out=Path(env.get("DEMO_OUT", "").strip() or "demo-output").resolve(),
            requests=_int(env, "DEMO_REQUESTS", 600, 20, 1_000_000),
            canary=canary.strip() or f"CANARY-{secrets.token_hex(8)}",
            canary_given=bool(canary.strip()),
            users=_int(env, "DEMO_USERS", 4, 1, 64),
            workers=workers or None,
            topology=topology,
            alerts=_bool(env, "DEMO_ALERTS", True),
            alert_window_s=_float(env, "DEMO_ALERT_WINDOW_S", 20.0, 2.0, 600.0),
            alert_timeout_s=_float(env, "DEMO_ALERT_TIMEOUT_S", 75.0, 5.0, 1800.0),
            export_interval_s=_float(env, "DEMO_EXPORT_INTERVAL_S", 5.0, 0.5, 300.0),
            llm_latency_ms=_float(env, "DEMO_LLM_LATENCY_MS", 60.0, 0.0, 10_000.0),
            local_llm=llm == "local" or (llm == "auto" and not env.get("OPENAI_API_KEY")),
            wandb_mode=wandb_mode,
            seed=_int(env, "DEMO_SEED", 2026, 0, 2**31),
            env=env,
            log_level=env_choice(env, "DEMO_LOG_LEVEL", "warning", ("debug", "info", "warning", "error")).upper(),
        )

    def resolve_topology(self) -> str:
        if self.topology == "auto":
            return "collector" if COLLECTOR_BINARY.exists() else "inprocess"
        if self.topology == "collector" and not COLLECTOR_BINARY.exists():
            raise DemoConfigError(f"DEMO_TOPOLOGY=collector but {COLLECTOR_BINARY} is missing: run collector/build.sh")
        return self.topology


def prepare_out(out: Path) -> None:
    """Make DEMO_OUT empty: wipe a previous demo's folder (it carries the marker), refuse any other non-empty one."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise DemoConfigError(f"DEMO_OUT={out} is not empty and was not made by the demo: choose another folder")
        shutil.rmtree(out)
    for sub in ("logs", "wandb", "stdout", "queue", "db", "cache", "tmp"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `python -m app.demo`; removed and recreated by the next demo run\n")
