"""``python -m otel_wandb.alerts check|send-test``: validate the rules and channel env vars, or send a test alert.

python -m otel_wandb.alerts check          # rules file + channels as the pipeline would load them; exit 2 if invalid
python -m otel_wandb.alerts send-test      # one "[TEST]" alert through every configured channel; exit 1 on failure
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from otel_wandb.alerts import AlertEvent, AlertManager, ConfigError, build
from otel_wandb.alerts._evaluator import format_value


def _check(manager: AlertManager) -> None:
    cfg = manager.config
    print(
        f"time zone {cfg.timezone}; W&B run alerts {'on' if cfg.wandb else 'off'}; "
        f"state file {manager.store.path or 'none (memory only)'}"
    )
    for rule in cfg.rules:
        where = "" if rule.metric in ("daily_ai_cost", "new_error_group") else f" over {rule.window:g}s"
        cond = (
            "each new fingerprint"
            if rule.metric == "new_error_group"
            else f"{rule.metric} {rule.comparison} {format_value(rule.metric, rule.threshold or 0.0)}{where}"
        )
        print(
            f"  {'on ' if rule.enabled else 'off'} {rule.name}: {cond}, min {rule.min_samples} samples, "
            f"wait {rule.wait:g}s, {rule.level} -> {', '.join(rule.channels) or '(W&B only)'}"
        )
    for name, worker in manager.dispatcher.workers.items():
        print(f"  channel {name}: {worker.channel.describe()}")
    used = sorted({c for r in cfg.enabled_rules for c in r.channels} - set(manager.dispatcher.workers))
    for name in used:
        print(f"  channel {name}: not configured (its alerts are skipped)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_wandb.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("check", "send-test"))
    parser.add_argument("--timeout", type=float, default=30.0, help="send-test: seconds to wait for delivery")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command == "send-test" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        manager = build(state_path=None if args.command == "send-test" else True)
    except ConfigError as exc:
        print(f"invalid alert configuration: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            _check(manager)
            return 0
        workers = manager.dispatcher.workers
        if not workers:
            print("no alert channel configured (SLACK_WEBHOOK_URL, SMTP_HOST, SMS_WEBHOOK_URL)", file=sys.stderr)
            return 1
        event = AlertEvent(
            "fire",
            "TEST alert pipeline",
            None,
            None,
            "A test alert from `python -m otel_wandb.alerts send-test`; no action needed.",
            "INFO",
            tuple(workers),
            0.0,
            time.time(),
            subject="delivery check",
        )
        manager.dispatcher.submit(event, tuple(workers))
        manager.dispatcher.wait_idle(args.timeout)
        failed = [name for name, w in workers.items() if w.sent < 1]
        for name, w in workers.items():
            print(f"  {name}: {'delivered' if w.sent else 'FAILED'}")
        return 1 if failed else 0
    finally:
        manager.shutdown(2.0)


if __name__ == "__main__":  # python -m otel_wandb.alerts
    sys.exit(main())
