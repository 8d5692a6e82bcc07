"""``python -m app.local_llm``."""

from app.local_llm import main

raise SystemExit(main())
