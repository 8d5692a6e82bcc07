"""``python -m otel_wandb.report``: the same as ``ai-diary-report``."""

from otel_wandb.report import main

raise SystemExit(main())
