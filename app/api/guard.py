"""App-wide request guards, run before every view (and before the blueprints' authentication).

``read_body`` reads the request body once, here, so that every transport problem is a clean 4xx before any view,
validator or error handler touches the body: over ``MAX_CONTENT_LENGTH`` (also a streamed, chunked body, which
werkzeug silently cuts at the limit) → 413; a body that cannot be read (malformed chunked encoding under gunicorn,
a client that disconnects mid-body) → 400 ``invalid_body`` (field ``body``). ``single_query_values`` answers 400
naming a query parameter that is given more than once (every parameter of this API is a single value).
"""

from __future__ import annotations

import logging

from flask import current_app, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from app.errors import ApiError

try:  # gunicorn's body reader raises its own parse errors (e.g. InvalidChunkSize), not OSError
    from gunicorn.http.errors import ParseException
except ImportError:  # pragma: no cover - gunicorn is a dependency; other servers raise OSError/ValueError

    class ParseException(Exception):  # type: ignore[no-redef]  # noqa: N818 - gunicorn's name, a stand-in
        """Placeholder when gunicorn is not installed."""


logger = logging.getLogger(__name__)
MAX_NAME = 64  # a repeated parameter's name is echoed in the error, cut to this length


def read_body() -> None:
    """Read and cache the body (``request.get_data`` later returns it); raise the 4xx for an unreadable one."""
    streamed = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not request.content_length and not streamed:
        return
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        data = request.get_data(cache=True)
        # werkzeug's limit on a stream without Content-Length stops reading at the limit without an error:
        # one more byte from the server's stream tells a body of exactly the limit from a longer one.
        if (
            limit is not None
            and request.content_length is None
            and len(data) >= limit
            and request.environ["wsgi.input"].read(1)
        ):
            raise RequestEntityTooLarge()
    except RequestEntityTooLarge:
        raise
    except (ClientDisconnected, ParseException, OSError, ValueError) as exc:
        logger.warning("request body could not be read: %s", type(exc).__name__)
        raise ApiError(
            400, "invalid_body", "the request body could not be read (malformed or incomplete)", "body"
        ) from None


def single_query_values() -> None:
    """400 naming the first query parameter given more than once (``?limit=1&limit=2``)."""
    for name, values in request.args.lists():
        if len(values) > 1:
            field = name[:MAX_NAME]
            raise ApiError(400, "invalid_field", f"{field}: given more than once", field)
