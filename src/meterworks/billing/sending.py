"""Sending invoices: a signed, expiring link to the invoice's PDF, e-mailed when SMTP is set up.

A link's token is `<payload>.<signature>`, both base64url: the payload names the organization,
the invoice and the expiry (Unix seconds); the signature is HMAC-SHA256 over the payload with a
key kept in the database (`server_secrets`), so every process over one database accepts the
links any of them signed, and links survive restarts. Time comes from the injected clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.engine import Connection

from meterworks.billing import store
from meterworks.billing.model import InvoiceStatus
from meterworks.billing.pdf import InvoicePdf, invoice_pdf
from meterworks.config import Settings
from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore
from meterworks.db.engine import Database
from meterworks.errors import Conflict, NotFound, Unavailable
from meterworks.kit.clock import Clock
from meterworks.kit.ids import random_secret
from meterworks.kit.money import format_minor

LINK_KEY_NAME = "invoice_link_key"
LINK_PATH = "/v1/invoice-links/"
SMTP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SignedLink:
    token: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    invoice_id: str
    link: SignedLink
    # The customer's address when the invoice was e-mailed; None when it was not (no SMTP
    # server configured, or no e-mail address on the customer).
    emailed_to: str | None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_key(conn: Connection, now: datetime) -> bytes:
    """The database's link-signing key, created by the first process that needs it."""
    # Two processes racing both insert; the primary key keeps one and both read it back.
    conn.execute(
        insert_ignore(conn, t.server_secrets).values(
            name=LINK_KEY_NAME, value=random_secret(32), created_at=now
        )
    )
    value = conn.execute(
        select(t.server_secrets.c.value).where(t.server_secrets.c.name == LINK_KEY_NAME)
    ).scalar_one()
    return str(value).encode("utf-8")


def sign(key: bytes, organization_id: str, invoice_id: str, expires_at: datetime) -> str:
    payload = f"{organization_id}:{invoice_id}:{int(expires_at.timestamp())}".encode()
    signature = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def verify(key: bytes, token: str, now: datetime) -> tuple[str, str]:
    """(organization id, invoice id) of a well-signed, unexpired token."""
    invalid = NotFound("this invoice link is not valid", code="invoice_link_invalid")
    encoded, _, signature = token.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except (ValueError, TypeError):
        raise invalid from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise invalid
    try:
        organization_id, invoice_id, expiry = payload.decode("utf-8").split(":")
        expires_at = datetime.fromtimestamp(int(expiry), tz=UTC)
    except (ValueError, OverflowError):
        raise invalid from None
    if now >= expires_at:
        raise NotFound(
            "this invoice link has expired; ask for the invoice to be sent again",
            code="invoice_link_expired",
        )
    return organization_id, invoice_id


class InvoiceSender:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    def link(self, organization_id: str, invoice_id: str, *, base_url: str) -> SignedLink:
        """A link to the invoice's PDF, valid for `invoice_link_seconds` from now."""
        now = self.clock.now()
        with self.db.transaction() as conn:
            invoice = store.get_invoice(conn, organization_id, invoice_id)
            if invoice.status is InvoiceStatus.DRAFT:
                raise Conflict(
                    "a draft cannot be sent; it is finalized at the end of its grace period",
                    code="invoice_not_finalized",
                )
            if invoice.status is InvoiceStatus.VOID:
                raise Conflict("the invoice is void", code="invoice_voided")
            key = link_key(conn, now)
        # Whole seconds: the token carries its expiry in Unix seconds.
        expires_at = (now + timedelta(seconds=self.settings.invoice_link_seconds)).replace(
            microsecond=0
        )
        token = sign(key, organization_id, invoice.id, expires_at)
        root = (self.settings.public_base_url or base_url).rstrip("/")
        return SignedLink(token, f"{root}{LINK_PATH}{token}", expires_at)

    def open_link(self, token: str) -> InvoicePdf:
        """The PDF a link points to, while the link is valid."""
        now = self.clock.now()
        with self.db.transaction() as conn:
            organization_id, invoice_id = verify(link_key(conn, now), token, now)
            return invoice_pdf(conn, organization_id, invoice_id)

    def send(self, organization_id: str, invoice_id: str, *, base_url: str) -> Sent:
        """Sign a link and, when an SMTP server is configured, e-mail it with the PDF attached."""
        link = self.link(organization_id, invoice_id, base_url=base_url)
        if not self.settings.smtp_host:
            return Sent(invoice_id, link, None)
        with self.db.read() as conn:
            document = invoice_pdf(conn, organization_id, invoice_id)
        recipient = document.customer.email
        if not recipient:
            return Sent(invoice_id, link, None)
        self._deliver(invoice_message(self.settings, recipient, document, link))
        return Sent(invoice_id, link, recipient)

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        assert s.smtp_host is not None
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise Unavailable(
                "the invoice could not be e-mailed: the mail server refused or did not answer",
                code="email_unavailable",
            ) from exc


def invoice_message(
    settings: Settings, recipient: str, document: InvoicePdf, link: SignedLink
) -> EmailMessage:
    invoice, seller = document.invoice, document.seller
    currency = invoice.currency
    label = f"Invoice {invoice.number}" if invoice.number is not None else "Invoice"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = recipient
    message["Subject"] = f"{label} from {seller}"
    due = "" if invoice.due_at is None else f", due {invoice.due_at:%Y-%m-%d}"
    message.set_content(
        f"{label} from {seller}: {format_minor(invoice.due_minor, currency)} {currency} to pay"
        f"{due}.\n\n"
        f"View and pay it here (the link is valid until {link.expires_at:%Y-%m-%d %H:%M} UTC):\n"
        f"{link.url}\n\n"
        "The invoice is attached as a PDF.\n"
    )
    message.add_attachment(
        document.content, maintype="application", subtype="pdf", filename=document.filename
    )
    return message
