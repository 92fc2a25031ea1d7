"""Logging: plain lines to stderr. Patient data never goes to logs: code logs ids, and the libraries that would
log message text or numbers (PyRuSH via loguru, the Twilio HTTP client) are silenced. As a safety net, every
handler masks phone numbers, email addresses and API tokens (followup/logredact.py), and loguru's warnings go
through the same handlers instead of straight to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

from followup.logredact import install as install_redaction


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
    install_redaction()


def _from_loguru(message: Any) -> None:
    record = message.record
    logging.getLogger(f"loguru.{record['name']}").log(record["level"].no, "%s", record["message"])
