"""Logging set-up and the redaction that keeps patient data out of every log line.

Logs are plain lines on stderr. Patient data never goes to logs: code logs ids, and the libraries that would log
message text or numbers (PyRuSH via loguru, the Twilio HTTP client) are silenced. As a safety net, every handler
masks phone numbers, email addresses and API tokens (`redact`), and loguru's warnings go through the same handlers
instead of straight to stderr. The mask cannot recognise free text (a message body): it is a safety net, not a
licence to log.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import phonenumbers

PHONE_MASK = "[phone]"
EMAIL_MASK = "[email]"
TOKEN_MASK = "[token]"  # noqa: S105 - the mask put in place of a token, not a secret

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Any number written with a leading +: E.164 ("+13105550142") and its spaced forms ("+44 7911 123456").
_PLUS_NUMBER = re.compile(r"\+\d[\d ().-]{5,22}\d")
_API_TOKEN = re.compile(r"\bfu_[A-Za-z0-9_-]{16,}")
_DIGITS = re.compile(r"\d")
_MIN_DIGITS = 7  # fewer digits than this cannot be a phone number: skip the (slower) matcher


def redact(text: str, region: str = "US") -> str:
    """`text` with phone numbers, email addresses and API tokens replaced by a mask."""
    if not text:
        return text
    text = _API_TOKEN.sub(TOKEN_MASK, text)
    if "@" in text:
        text = _EMAIL.sub(EMAIL_MASK, text)
    if len(_DIGITS.findall(text)) < _MIN_DIGITS:
        return text
    text = _PLUS_NUMBER.sub(PHONE_MASK, text)
    # National formats ("(310) 555-0142", "310.555.0142") read as the clinic's region would read them. POSSIBLE
    # leniency: a log must rather lose a stray 10-digit number than keep a real one.
    found = [
        (m.start, m.end)
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)
        if _standalone(text, m.start, m.end)
    ]
    for start, end in reversed(found):
        text = text[:start] + PHONE_MASK + text[end:]
    return text


def _standalone(text: str, start: int, end: int) -> bool:
    """Not digits inside a longer word, such as a provider id ("SM0123456789abcdef")."""
    return not (start > 0 and text[start - 1].isalnum()) and not (end < len(text) and text[end].isalnum())


class RedactingFilter(logging.Filter):
    """Rewrites a record in place (message, exception text, stack) with `redact`; never drops a record."""

    def __init__(self, region: str = "US") -> None:
        super().__init__()
        self.region = region

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep what can be shown, masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message, self.region), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.region)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.region)
        return True


def install(logger: logging.Logger | None = None, region: str = "US") -> None:
    """Put one RedactingFilter on every handler of `logger` (the root logger by default); idempotent."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(region))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("twilio.http_client", "twilio", "apscheduler", "httpx", "urllib3", "python_http_client", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from loguru import logger

        logger.disable("PyRuSH")
        logger.remove()  # its default sink writes to stderr unfiltered
        logger.add(_from_loguru, level="WARNING", format="{message}")
    except ImportError:  # pragma: no cover - loguru comes with medspaCy
        pass
    install()


def _from_loguru(message: Any) -> None:
    record = message.record
    logging.getLogger(f"loguru.{record['name']}").log(record["level"].no, "%s", record["message"])
