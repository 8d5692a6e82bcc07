"""``python -m app.audit``: the same as ``ai-diary-audit``."""

from app.audit import main

raise SystemExit(main())
