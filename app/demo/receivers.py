"""Real local receivers for alert deliveries, for tests and the demo: an SMTP server (aiosmtpd) and an HTTP
webhook receiver (stdlib). Both bind 127.0.0.1 on a free port by default and record what they get.

    with SmtpReceiver() as smtp, WebhookReceiver() as hooks:
        env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "ALERT_EMAIL_TO": "ops@example.test",
               "SLACK_WEBHOOK_URL": hooks.url("/slack"), "SMS_WEBHOOK_URL": hooks.url("/sms"), "SMS_TO": "+15550100"}
        ...
        smtp.wait_for(1); hooks.wait_for(2, path="/slack")

``python -m app.demo.receivers`` runs both and prints each delivery (a manual check of real channels).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError as exc:  # pragma: no cover - dev dependency
    raise ImportError("app.demo.receivers needs aiosmtpd: pip install 'ai-diary[dev]'") from exc


@dataclass(slots=True)
class ReceivedMail:
    sender: str
    recipients: list[str]
    subject: str
    body: str
    headers: dict[str, str]
    auth_user: str | None = None
    tls: bool = False  # delivered over STARTTLS


@dataclass(slots=True)
class ReceivedRequest:
    method: str
    path: str
    content_type: str
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    auth_user: str | None = None  # the basic-auth user; the password and raw header are never kept

    @property
    def text(self) -> str:
        if isinstance(self.json, dict) and "text" in self.json:
            return str(self.json["text"])
        return self.form.get("Body", self.body.decode("utf-8", "replace"))


def _wait(items: list[Any], n: int, timeout: float, pred: Callable[[Any], bool]) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in list(items) if pred(x)]
        if len(found) >= n or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


class _Controller(Controller):
    def _trigger_server(self) -> None:  # learn the port the OS picked for port=0, then let aiosmtpd connect
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiosmtpd: an asyncio.Server by now
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated

    def factory(self) -> Any:
        with warnings.catch_warnings():  # AUTH without TLS is what a loopback test server wants
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated


class SmtpReceiver:
    """A real SMTP server; ``auth=(user, password)`` requires AUTH LOGIN/PLAIN (without TLS, loopback only)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: tuple[str, str] | None = None,
        on_message: Callable[[ReceivedMail], None] | None = None,
        tls_cert: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[ReceivedMail] = []
        self.on_message = on_message
        self._auth = auth
        params: dict[str, Any] = {}
        if logging.getLogger("mail.log").level == logging.NOTSET:
            logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every SMTP verb at INFO
        if auth:
            params = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        if tls_cert:  # (certfile, keyfile): STARTTLS required before MAIL
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls_cert)
            params.update(tls_context=ctx, require_starttls=True)
        self._controller = _Controller(self, hostname=host, port=port, ready_timeout=10.0, **params)

    @property
    def host(self) -> str:
        return self._controller.hostname

    @property
    def port(self) -> int:
        return self._controller.port

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            self._auth is not None
            and getattr(auth_data, "login", None) == self._auth[0].encode()
            and getattr(auth_data, "password", None) == self._auth[1].encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=getattr(auth_data, "login", None))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        login = session.auth_data
        tls = getattr(session, "ssl", None) is not None
        mail = ReceivedMail(
            sender=envelope.mail_from,
            recipients=list(envelope.rcpt_tos),
            subject=str(msg["Subject"] or ""),
            body=body.get_content() if body is not None else "",
            headers={k: str(v) for k, v in msg.items()},
            auth_user=login.decode() if isinstance(login, bytes) else login,
            tls=tls,
        )
        self.messages.append(mail)
        if self.on_message:
            self.on_message(mail)
        return "250 Message accepted"

    def wait_for(self, n: int = 1, timeout: float = 10.0, subject: str = "") -> list[ReceivedMail]:
        return _wait(self.messages, n, timeout, lambda m: subject in m.subject)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebhookReceiver:
    """HTTP server recording every POST; answers ``status`` (settable, e.g. 500 to simulate an outage), or what
    ``status_for(request)`` returns (e.g. fail for one SMS recipient only)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        status: int = 200,
        on_request: Callable[[ReceivedRequest], None] | None = None,
        status_for: Callable[[ReceivedRequest], int] | None = None,
    ) -> None:
        self.requests: list[ReceivedRequest] = []
        self.status = status
        self.on_request = on_request
        self.status_for = status_for
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                req = ReceivedRequest("POST", self.path, ctype, body, auth_user=_basic_user(self.headers))
                if "json" in ctype:
                    try:
                        req.json = json.loads(body)
                    except ValueError:
                        pass
                elif "x-www-form-urlencoded" in ctype:
                    req.form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                owner.requests.append(req)
                if owner.on_request:
                    owner.on_request(req)
                status = owner.status_for(req) if owner.status_for else owner.status
                payload = b"ok" if status < 300 else b"receiver configured to fail"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, n: int = 1, timeout: float = 10.0, path: str | None = None) -> list[ReceivedRequest]:
        return _wait(self.requests, n, timeout, lambda r: path is None or r.path == path)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _basic_user(headers: Any) -> str | None:
    value = headers.get("Authorization") or ""
    if not value.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(value[6:]).decode("utf-8").split(":", 1)[0]
    except ValueError:
        return None


def main() -> None:  # pragma: no cover - manual tool
    with (
        SmtpReceiver(on_message=lambda m: print(f"[smtp] to={m.recipients} subject={m.subject!r}\n{m.body}")) as s,
        WebhookReceiver(on_request=lambda r: print(f"[http] {r.path}: {r.text}")) as w,
    ):
        print(
            f"SMTP_HOST=127.0.0.1 SMTP_PORT={s.port} SLACK_WEBHOOK_URL={w.url('/slack')} "
            f"SMS_WEBHOOK_URL={w.url('/sms')}",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
