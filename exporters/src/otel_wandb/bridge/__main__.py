"""``python -m otel_wandb.bridge``: the same as the ``wandb-bridge`` command."""

from otel_wandb.bridge import main

raise SystemExit(main())
