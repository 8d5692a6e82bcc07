"""Delivery channels: W&B (through the sink), Slack incoming webhook, SMTP email, SMS webhook (Twilio-style form).

Each channel's ``send(event)`` makes one attempt and raises :class:`ChannelError` on failure; retries, backoff and
threads live in :mod:`otel_wandb.alerts._dispatcher`. A channel that makes one request per recipient (SMS) also has
``recipients`` and ``send_to(event, recipient)``: the dispatcher then retries each recipient on its own, so a
failure for one never re-sends to the others. Configuration comes from :class:`otel_wandb.config.ChannelSettings`,
validated at start-up with errors naming the variable. Error texts are scrubbed of the channel's secrets (webhook
URLs, tokens, passwords).
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from otel_wandb.alerts._evaluator import AlertEvent
from otel_wandb.config import (
    ALERT_EMAIL_TO,
    SLACK_WEBHOOK_URL,
    SMS_ACCOUNT_SID,
    SMS_AUTH_TOKEN,
    SMS_TO,
    SMS_WEBHOOK_URL,
    SMTP_ALLOW_PLAINTEXT_LOGIN,
    SMTP_HOST,
    SMTP_PASSWORD,
    SMTP_STARTTLS,
    SMTP_USERNAME,
    ChannelSettings,
    ConfigError,
)

SMS_MAX_CHARS = 320


class ChannelError(Exception):
    """One delivery attempt failed; the message is safe to log."""


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

    def __init__(
        self,
        url: str,
        recipients: tuple[str, ...],
        sender: str = "",
        account_sid: str = "",
        auth_token: str = "",
        timeout: float = 5.0,
    ) -> None:
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


# -- configuration ---------------------------------------------------------------------------------------------
def _url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _required(items: tuple[str, ...], name: str, required_by: str) -> tuple[str, ...]:
    if not items:
        raise ConfigError(f"{name}: required when {required_by} is set (comma-separated list)")
    return items


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
    raise ConfigError(
        f"{SMTP_USERNAME}: a login without STARTTLS to a remote host would send the password in clear text; set "
        f"{SMTP_STARTTLS}=true (or {SMTP_ALLOW_PLAINTEXT_LOGIN}=true to accept that)"
    )


def channels_from_settings(cfg: ChannelSettings | None = None) -> dict[str, Channel]:
    """The external channels that are configured (a partly configured channel is a ConfigError naming the
    variable); ``cfg`` defaults to :meth:`ChannelSettings.from_env`."""
    cfg = cfg or ChannelSettings.from_env()
    found: dict[str, Channel] = {}
    if cfg.slack_url:
        found["slack"] = SlackChannel(_url(cfg.slack_url, SLACK_WEBHOOK_URL), cfg.timeout_s)
    if cfg.smtp_host:
        if cfg.smtp_username and not cfg.smtp_password:
            raise ConfigError(f"{SMTP_PASSWORD}: required when {SMTP_USERNAME} is set")
        _check_login_transport(cfg.smtp_host, cfg.smtp_starttls, cfg.smtp_username, cfg.smtp_allow_plaintext_login)
        found["email"] = EmailChannel(
            host=cfg.smtp_host,
            port=cfg.smtp_port or (587 if cfg.smtp_starttls else 25),
            sender=cfg.email_from or "ai-diary-alerts@localhost",
            recipients=_required(cfg.email_to, ALERT_EMAIL_TO, SMTP_HOST),
            starttls=cfg.smtp_starttls,
            username=cfg.smtp_username,
            password=cfg.smtp_password,
            timeout=cfg.timeout_s,
            ca_file=cfg.smtp_ca_file,
        )
    if cfg.sms_url:
        if bool(cfg.sms_account_sid) != bool(cfg.sms_auth_token):
            raise ConfigError(f"{SMS_ACCOUNT_SID} and {SMS_AUTH_TOKEN}: set both or neither")
        found["sms"] = SmsChannel(
            _url(cfg.sms_url, SMS_WEBHOOK_URL),
            _required(cfg.sms_to, SMS_TO, SMS_WEBHOOK_URL),
            cfg.sms_from,
            cfg.sms_account_sid,
            cfg.sms_auth_token,
            cfg.timeout_s,
        )
    return found
