"""What the phone call for an unacknowledged emergency says: `templates/<lang>/voice.toml`, clinic-editable."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

KEYS = ("alert", "no_key", "acknowledged", "declined", "closed")


@lru_cache(maxsize=8)
def voice_words(root: Path, language: str) -> dict[str, str]:
    """The sentences for `language` (English when that language has no voice.toml)."""
    path = root / language / "voice.toml"
    if not path.exists():
        path = root / "en" / "voice.toml"
    words = tomllib.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in KEYS if not isinstance(words.get(k), str)]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return {k: str(words[k]) for k in KEYS}
