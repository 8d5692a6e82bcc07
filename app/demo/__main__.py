"""``python -m app.demo``."""

from app.demo import main

raise SystemExit(main())
