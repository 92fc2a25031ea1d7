"""Text from outside (webhooks, forms) made storable in any database: PostgreSQL refuses NUL in text, and no
database can encode a lone surrogate (JSON's "\\ud800", or bytes a decoder kept with surrogateescape)."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` without NUL characters and with lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def storable_json(value: Any) -> Any:
    """`storable` applied to every string (keys too) in JSON-like data."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
