"""Turn a SendGrid Inbound Parse post (hostile input) into a `Reply`. Pure: no I/O.

Handles both the parsed mode (fields text, html, headers, charsets, ...) and raw mode (the whole MIME message in
`email`). Attachments are recorded (name, type, size) and never opened.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from email import message_from_string, policy
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

from followup.core.replies import Reply
from followup.parsing.mailtext import extract_reply, html_to_text

TOKEN = re.compile(r"^(p[0-9a-f]{16})$")
DKIM_RESULT = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*([A-Za-z]+)")  # SendGrid's "{@example.com : pass, @x.net : fail}"


def sender_verified(sender: str, spf: str, envelope_from: str, dkim: str) -> bool:
    """Whether SendGrid's checks vouch for the From address's domain: DKIM passed for exactly that domain, or SPF
    passed for an envelope sender in that domain. A From header alone is anyone's to write (issue 11, finding 5)."""
    domain = sender.rpartition("@")[2].lower()
    if not domain or "@" not in sender:
        return False
    if any(d.lower() == domain and r.lower() == "pass" for d, r in DKIM_RESULT.findall(dkim or "")):
        return True
    return (spf or "").strip().lower() == "pass" and envelope_from.rpartition("@")[2].lower() == domain


def _auth(fields: dict[str, str], sender: str) -> dict[str, Any]:
    """What SendGrid's SPF and DKIM checks said, as kept with the reply, and whether they vouch for the sender."""
    envelope_from = ""
    try:
        env = json.loads(fields.get("envelope") or "{}")
        if isinstance(env, dict) and isinstance(env.get("from"), str):
            envelope_from = env["from"].strip().lower()
    except json.JSONDecodeError:
        pass
    spf, dkim = fields.get("SPF", ""), fields.get("dkim", "")
    return {
        "spf": spf[:40],
        "dkim_pass": sorted({d.lower() for d, r in DKIM_RESULT.findall(dkim) if r.lower() == "pass"})[:10],
        "sender_verified": sender_verified(sender, spf, envelope_from, dkim),
    }


class BadInbound(ValueError):
    """The post cannot be read as an email at all (says which field)."""


def _recode(value: str, charset: str | None) -> str:
    """Starlette decodes form fields as UTF-8, falling back to latin-1; re-read them in the declared charset."""
    if not charset or charset.lower().replace("_", "-") in ("utf-8", "utf8", "us-ascii", "ascii"):
        return value
    try:
        return value.encode("latin-1").decode(charset, errors="replace")
    except (UnicodeEncodeError, LookupError):
        return value


def parse_sendgrid(fields: dict[str, str], reply_domain: str, attachments: list[dict[str, Any]]) -> Reply:
    charsets: dict[str, str] = {}
    try:
        loaded = json.loads(fields.get("charsets") or "{}")
        if isinstance(loaded, dict):
            charsets = {str(k): str(v) for k, v in loaded.items()}
    except json.JSONDecodeError:
        pass
    if fields.get("email"):
        raw = _from_raw(fields["email"], reply_domain, attachments)
        return replace(raw, meta={**(raw.meta or {}), **_auth(fields, raw.sender)})
    headers = HeaderParser(policy=policy.default).parsestr(fields.get("headers", ""))
    sender = _address(fields.get("from") or str(headers.get("From", "")))
    if not sender:
        raise BadInbound("from: no sender address")
    text = _recode(fields.get("text", ""), charsets.get("text"))
    html = _recode(fields.get("html", ""), charsets.get("html"))
    subject = _recode(fields.get("subject", ""), charsets.get("subject"))[:500]
    recipients = _recipients(fields.get("to", ""), fields.get("envelope", ""), str(headers.get("To", "")))
    message_id = str(headers.get("Message-ID", "") or "").strip()
    reply = _reply(sender, subject, text, html, recipients, message_id, reply_domain, attachments, "parsed")
    return replace(reply, meta={**(reply.meta or {}), **_auth(fields, sender)})


def _from_raw(raw: str, reply_domain: str, attachments: list[dict[str, Any]]) -> Reply:
    msg = message_from_string(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage):
        raise BadInbound("email: not a MIME message")
    sender = _address(str(msg.get("From", "")))
    if not sender:
        raise BadInbound("email: no From address")
    text = html = ""
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if part.get_content_disposition() == "attachment" or kind not in ("text/plain", "text/html"):
            # Only text is read: a photo (attached or inline) is recorded, never decoded (finding 8).
            attachments.append({"filename": part.get_filename() or "", "type": kind})
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError):
            content = part.get_payload(decode=True)
            content = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else ""
        if part.get_content_type() == "text/plain" and not text:
            text = str(content)
        elif part.get_content_type() == "text/html" and not html:
            html = str(content)
    recipients = [a for _, a in getaddresses([str(msg.get("To", "")), str(msg.get("Cc", ""))])]
    return _reply(
        sender,
        str(msg.get("Subject", ""))[:500],
        text,
        html,
        recipients,
        str(msg.get("Message-ID", "")).strip(),
        reply_domain,
        attachments,
        "raw",
    )


def _reply(
    sender: str,
    subject: str,
    text: str,
    html: str,
    recipients: list[str],
    message_id: str,
    reply_domain: str,
    attachments: list[dict[str, Any]],
    mode: str,
) -> Reply:
    body_source = text if text.strip() else html_to_text(html) if html.strip() else ""
    body = extract_reply(body_source) if body_source.strip() else ""
    token = None
    for addr in recipients:
        local, _, domain = addr.lower().partition("@")
        if domain == reply_domain.lower() and TOKEN.match(local):
            token = local
            break
    if not message_id:
        digest = hashlib.sha256(f"{sender}\n{subject}\n{text}\n{html}".encode("utf-8", "replace")).hexdigest()
        message_id = f"sha256:{digest[:40]}"
    meta = {
        "mode": mode,
        "attachments": attachments[:20],
        "attachment_count": len(attachments),
        "html_only": not text.strip() and bool(html.strip()),
        "chars": len(body_source),
    }
    return Reply(
        channel="email",
        provider_key=f"email:{message_id[:300]}",
        sender=sender,
        body=body,
        subject=subject or None,
        reply_token=token,
        meta=meta,
    )


def _address(raw: str) -> str:
    _, addr = parseaddr(raw)
    addr = addr.strip().lower()
    return addr if "@" in addr and len(addr) <= 254 else ""


def _recipients(to: str, envelope: str, header_to: str) -> list[str]:
    found = [a.lower() for _, a in getaddresses([to, header_to]) if a]
    try:
        env = json.loads(envelope) if envelope else {}
        if isinstance(env, dict) and isinstance(env.get("to"), list):
            found += [str(a).lower() for a in env["to"]]
    except json.JSONDecodeError:
        pass
    return found
