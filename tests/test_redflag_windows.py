"""Long replies are read in windows: nothing at the end is missed and offsets point into the whole text."""

from __future__ import annotations

from pathlib import Path

import pytest

from followup.redflags import Detector
from followup.redflags.detector import WINDOW_CHARS, windows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.from_file(ROOT / "clinic/red_flags.toml")


@pytest.mark.parametrize(
    "filler",
    ["Feeling fine, thanks for asking. ", "no weakness at all\n", "x" * 40 + " "],
    ids=["sentences", "lines", "no-sentence-ends"],
)
def test_red_flag_after_long_text_is_found(detector: Detector, filler: str) -> None:
    """A red flag after 10,000 characters of chatter is still found, with offsets into the whole reply."""
    text = filler * (10_000 // len(filler)) + " But my right hand is getting weaker."
    v = detector.assess(text)
    assert v.level == "red_flag" and "weakness" in v.criteria
    assert all(text[f.start : f.end] == f.text for f in v.findings)


def test_windows_cover_the_text_exactly() -> None:
    """Windows are contiguous, never longer than the limit, and never cut inside a word when a space exists."""
    text = "word " * 2000
    parts = windows(text, WINDOW_CHARS)
    assert "".join(chunk for _, chunk in parts) == text
    assert all(len(chunk) <= WINDOW_CHARS for _, chunk in parts)
    assert all(chunk.endswith(" ") for _, chunk in parts[:-1])
