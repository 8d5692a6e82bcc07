"""Delivery channels: W&B (through the sink), Slack incoming webhook, SMTP email, SMS webhook (Twilio-style form).

Each channel's ``send(event)`` makes one attempt and raises :class:`ChannelError` on failure; retries, backoff and
threads live in :mod:`otel_wandb.alerts._dispatcher`. A channel that makes one request per recipient (SMS) also has
``recipients`` and ``send_to(event, recipient)``: the dispatcher then retries each recipient on its own, so a
failure for one never re-sends to the others. Configuration comes from env vars, validated at start-up with
errors naming the variable. Error texts are scrubbed of the channel's secrets (webhook URLs, tokens, passwords).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Mapping, Protocol
from urllib.parse import urlsplit

import httpx

from otel_wandb.config import env_flag, env_number
from otel_wandb.alerts._evaluator import AlertEvent

ENV_SLACK_WEBHOOK_URL = "SLACK_WEBHOOK_URL"
ENV_SMTP_HOST, ENV_SMTP_PORT, ENV_SMTP_STARTTLS = "SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS"
ENV_SMTP_USERNAME, ENV_SMTP_PASSWORD = "SMTP_USERNAME", "SMTP_PASSWORD"
ENV_SMTP_CA_FILE = "SMTP_CA_FILE"  # optional PEM bundle to verify the server's STARTTLS certificate
ENV_SMTP_ALLOW_PLAINTEXT_LOGIN = "SMTP_ALLOW_PLAINTEXT_LOGIN"  # true: log in without STARTTLS to a remote host
ENV_EMAIL_FROM, ENV_EMAIL_TO = "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO"
ENV_SMS_WEBHOOK_URL, ENV_SMS_FROM, ENV_SMS_TO = "SMS_WEBHOOK_URL", "SMS_FROM", "SMS_TO"
ENV_SMS_ACCOUNT_SID, ENV_SMS_AUTH_TOKEN = "SMS_ACCOUNT_SID", "SMS_AUTH_TOKEN"
ENV_CHANNEL_TIMEOUT = "ALERTS_CHANNEL_TIMEOUT"
SMS_MAX_CHARS = 320


class ChannelError(Exception):
    """One delivery attempt failed; the message is safe to log."""


class ChannelConfigError(ValueError):
    """A channel env var is invalid; the message names the variable."""


class Channel(Protocol):
    name: str

    def send(self, event: AlertEvent) -> None: ...

    def describe(self) -> str: ...


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _ScrubSecrets(logging.Filter):
    """On the ``httpx`` logger, which logs every request URL at INFO: webhook URLs carry their tokens."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = scrub(message, tuple(sorted(self.secrets, key=len, reverse=True)))
            if clean != message:
                record.msg, record.args = clean, ()
        return True


_SCRUB = _ScrubSecrets()


def _register_secrets(*secrets: str) -> None:
    if not _SCRUB.secrets:
        logging.getLogger("httpx").addFilter(_SCRUB)
    _SCRUB.secrets.update(s for s in secrets if s)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':%d' % parts.port if parts.port else ''}"


def _post(client: httpx.Client, url: str, secrets: tuple[str, ...], **kwargs: Any) -> None:
    try:
        response = client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise ChannelError(scrub(f"{type(exc).__name__}: {exc}", secrets)) from None
    if response.status_code >= 300:
        raise ChannelError(f"HTTP {response.status_code} from {_where(url)}")


class WandbChannel:
    """Records the alert in the W&B run: ``sink.alert(title, text, level, wait_duration)``.

    Offline runs record alerts without delivering them (wandb 0.31); online, W&B throttles per title for
    ``wait_duration`` seconds. One attempt, no retry: ``run.alert`` is a local call into the wandb service.
    """

    name = "wandb"
    inline = True  # recorded on the pipeline's flusher thread (like sink.log), so it lands before sink.finish

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def describe(self) -> str:
        return "W&B run (run.alert on the flusher thread)"

    def send(self, event: AlertEvent) -> None:
        try:
            ok = self.sink.alert(title=event.title, text=event.text, level=event.level, wait_duration=event.wait)
        except Exception as exc:  # the sink is someone else's code: never let it escape
            raise ChannelError(f"{type(exc).__name__}: {exc}") from None
        if ok is False:
            raise ChannelError("the W&B sink is disabled or its alert call failed")


class SlackChannel:
    name = "slack"

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        _register_secrets(url)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def describe(self) -> str:
        return f"Slack webhook at {_where(self.url)}"

    def send(self, event: AlertEvent) -> None:
        icon = {"resolve": ":white_check_mark:", "fire": ":rotating_light:"}.get(event.kind, "")
        _post(self._client, self.url, (self.url,), json={"text": f"{icon} *{event.title}*\n{event.text}"})


@dataclass(slots=True)
class EmailChannel:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 5.0
    ca_file: str = ""
    name: str = "email"

    def describe(self) -> str:
        tls = " STARTTLS" if self.starttls else ""
        return f"SMTP {self.host}:{self.port}{tls} to {len(self.recipients)} recipient(s)"

    def send(self, event: AlertEvent) -> None:
        msg = EmailMessage()
        msg["Subject"] = f"[ai-diary] {event.title}"
        msg["From"], msg["To"] = self.sender, ", ".join(self.recipients)
        msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid(domain="ai-diary.alerts")
        msg["X-Alert-Rule"], msg["X-Alert-Kind"] = event.rule, event.kind
        msg.set_content(f"{event.text}\n\nlevel: {event.level}\nrule: {event.rule}\n")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file or None))
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(scrub(f"{type(exc).__name__}: {exc}", (self.password,))) from None


class SmsChannel:
    """Form post ``From``/``To``/``Body`` (Twilio Messages API style), optional basic auth SID:token."""

    name = "sms"

    def __init__(self, url: str, recipients: tuple[str, ...], sender: str = "", account_sid: str = "",
                 auth_token: str = "", timeout: float = 5.0) -> None:
        self.url, self.recipients, self.sender = url, recipients, sender
        self._auth = (account_sid, auth_token) if account_sid else None
        self._secrets = (url, auth_token)
        _register_secrets(url)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def describe(self) -> str:
        return f"SMS webhook at {_where(self.url)} to {len(self.recipients)} number(s)"

    def send(self, event: AlertEvent) -> None:
        """Every recipient in turn (stops at the first failure); the dispatcher uses :meth:`send_to` instead."""
        for to in self.recipients:
            self.send_to(event, to)

    def send_to(self, event: AlertEvent, recipient: str) -> None:
        body = f"{event.title}: {event.text}"
        body = body if len(body) <= SMS_MAX_CHARS else body[: SMS_MAX_CHARS - 1] + "…"
        form = {"To": recipient, "Body": body, **({"From": self.sender} if self.sender else {})}
        _post(self._client, self.url, self._secrets, data=form, auth=self._auth)


# -- configuration from the environment ----------------------------------------------------------------------
def _get(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _url(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelConfigError(f"{name}: expected an http(s) URL")
    return value


def _list(env: Mapping[str, str], name: str, required_by: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in _get(env, name).split(",") if x.strip())
    if not items:
        raise ChannelConfigError(f"{name}: required when {required_by} is set (comma-separated list)")
    return items


def parse_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    return env_flag(env, name, default, error=ChannelConfigError)


def parse_number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float, kind: type = float) -> Any:
    return env_number(env, name, default, lo=lo, hi=hi, kind=kind, error=ChannelConfigError)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): a login there never crosses a network."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_login_transport(host: str, starttls: bool, username: str, allow_plaintext: bool) -> None:
    """Refuse an SMTP login without STARTTLS to a remote host (the password would cross the network in clear
    text) unless ``SMTP_ALLOW_PLAINTEXT_LOGIN=true``."""
    if not username or starttls or is_loopback(host) or allow_plaintext:
        return
    raise ChannelConfigError(
        f"{ENV_SMTP_USERNAME}: login to {host} without STARTTLS would send the password in clear text; set "
        f"{ENV_SMTP_STARTTLS}=true (or {ENV_SMTP_ALLOW_PLAINTEXT_LOGIN}=true to accept that)")


def channels_from_env(env: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """The external channels whose env vars are set (a partly configured channel is an error)."""
    env = os.environ if env is None else env
    timeout = parse_number(env, ENV_CHANNEL_TIMEOUT, 5.0, 0.1, 120.0)
    found: dict[str, Channel] = {}
    if _get(env, ENV_SLACK_WEBHOOK_URL):
        found["slack"] = SlackChannel(_url(env, ENV_SLACK_WEBHOOK_URL), timeout)
    if _get(env, ENV_SMTP_HOST):
        starttls = parse_bool(env, ENV_SMTP_STARTTLS)
        allow_plaintext = parse_bool(env, ENV_SMTP_ALLOW_PLAINTEXT_LOGIN)  # validated even where it does not matter
        username = _get(env, ENV_SMTP_USERNAME)
        if username and not env.get(ENV_SMTP_PASSWORD):
            raise ChannelConfigError(f"{ENV_SMTP_PASSWORD}: required when {ENV_SMTP_USERNAME} is set")
        _check_login_transport(_get(env, ENV_SMTP_HOST), starttls, username, allow_plaintext)
        ca_file = _get(env, ENV_SMTP_CA_FILE)
        if ca_file and not os.path.isfile(ca_file):
            raise ChannelConfigError(f"{ENV_SMTP_CA_FILE}: {ca_file!r} is not a readable file")
        found["email"] = EmailChannel(
            host=_get(env, ENV_SMTP_HOST),
            port=parse_number(env, ENV_SMTP_PORT, 587 if starttls else 25, 1, 65535, int),
            sender=_get(env, ENV_EMAIL_FROM) or "ai-diary-alerts@localhost",
            recipients=_list(env, ENV_EMAIL_TO, ENV_SMTP_HOST), starttls=starttls, username=username,
            password=env.get(ENV_SMTP_PASSWORD) or "", timeout=timeout, ca_file=ca_file)
    if _get(env, ENV_SMS_WEBHOOK_URL):
        sid, token = _get(env, ENV_SMS_ACCOUNT_SID), env.get(ENV_SMS_AUTH_TOKEN) or ""
        if bool(sid) != bool(token):
            raise ChannelConfigError(f"{ENV_SMS_ACCOUNT_SID} and {ENV_SMS_AUTH_TOKEN}: set both or neither")
        found["sms"] = SmsChannel(_url(env, ENV_SMS_WEBHOOK_URL), _list(env, ENV_SMS_TO, ENV_SMS_WEBHOOK_URL),
                                  _get(env, ENV_SMS_FROM), sid, token, timeout)
    return found
