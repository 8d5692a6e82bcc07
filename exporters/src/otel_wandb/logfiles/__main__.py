"""``python -m otel_wandb.logfiles``: the same as ``ai-diary-logs``."""

from otel_wandb.logfiles import main

raise SystemExit(main())
