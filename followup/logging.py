"""Logging: plain lines to stderr. Patient data never goes to logs: code logs ids, and the libraries that would
log message text or numbers (PyRuSH via loguru, the Twilio HTTP client) are silenced."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("twilio.http_client", "twilio", "apscheduler", "httpx", "urllib3", "python_http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from loguru import logger

        logger.disable("PyRuSH")
    except ImportError:  # pragma: no cover - loguru comes with medspaCy
        pass
