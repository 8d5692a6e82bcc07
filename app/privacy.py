"""Pseudonymous user ids for telemetry: keyed HMAC-SHA256, never the raw id.

``configure(secret)`` is called by ``create_app``; without it the key comes from ``PSEUDONYM_SECRET`` or, for
development only, a random per-process key (one warning). ``instance_secret(path)`` provides a development key
that is shared by every worker and survives restarts (a 0600 file in the instance folder); ``create_app`` warns at
every start that uses it, and refuses to start without PSEUDONYM_SECRET in production (app/config.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading

from app.config import PSEUDONYM_SECRET, env_value

logger = logging.getLogger(__name__)
PREFIX = "u_"
HEX_CHARS = 16

_lock = threading.Lock()
_key: bytes | None = None


def configure(secret: str | bytes) -> None:
    global _key
    with _lock:
        _key = secret.encode() if isinstance(secret, str) else bytes(secret)


def _current_key() -> bytes:
    global _key
    if _key is None:
        with _lock:
            if _key is None:
                env = env_value(PSEUDONYM_SECRET)
                if env:
                    _key = env.encode()
                else:
                    logger.warning("PSEUDONYM_SECRET is not set: using a random development key for this process")
                    _key = secrets.token_bytes(32)
    return _key


def pseudonymize(user_id: int | str) -> str:
    """``u_`` + 16 hex digits of HMAC-SHA256(key, str(user_id)); stable for one key."""
    digest = hmac.new(_current_key(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def instance_secret(path: str) -> str:
    """Read the development key at ``path``, creating it atomically (0600) if no worker has yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32))
        logger.info("generated a development pseudonym key in %s", path)
    for _ in range(50):  # another worker may be between O_EXCL and write
        with open(path, encoding="ascii") as fh:
            value = fh.read().strip()
        if value:
            return value
        threading.Event().wait(0.01)
    raise RuntimeError(f"empty pseudonym key file {path}; set PSEUDONYM_SECRET")
