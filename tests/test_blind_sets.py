"""The retired blind sets in tests/blind/ (see its README) as floors: detection may not get worse on them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from followup.parsing.mailtext import extract_reply
from followup.redflags import ReplyContext, Screen

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = ROOT / "clinic" / "red_flags.toml"
BLIND = ROOT / "tests" / "blind"

# set -> (escalation recall, emergency recall, specificity): the figures first measured with both layers, rounded
# down; a floor, not a target (see tests/blind/README.md for why these cases are never used to tune). On 2026-12-04
# (session 23) the learned layer began reading each clause alone for emergencies (`clause_alone`, chosen on the
# corpus' validation split): emergency recall rose on 23 sets (floors raised to it) and specificity fell by one to
# three replies on 13 (floors lowered to it), a trade made on purpose; escalation recall moved on none. On
# 2026-12-04 (session 24) a vaccine stopped explaining weakness or numbness away ("since the flu jab my legs are
# weak" was answered none: "flu" read as the illness): one benign reply about a flu shot became a red flag on i-en
# and on o-es (floors lowered to it); the same change's figures of speech and causes cleared 12 benign replies
# across 11 sets (net +9 of 2,738), recall unchanged on every set. A negated mention blanked out for the learned
# layer instead of its whole clause (`gate_mentions`, 55ff1e4) was taken out again the same day: it read "never had a
# seizure or anything like that" as self-harm and "no tengo debilidad en las manos" as numbness; the rules' own fix
# for the kind it was for (a verb negated with its object, "can't shift it", negates no symptom after it) replaced
# it, with Spanish "not only" ("ya no son nomás en la pantorrilla") as a pseudo phrase. Recall and emergency floors
# are what each set scores now where that is higher than its first figure.
FLOORS = {
    "blind-2026-12-02-d-en.jsonl": (0.97, 0.93, 0.70),
    "blind-2026-12-02-d-es.jsonl": (0.99, 0.97, 0.60),
    "blind-2026-12-02-e-en.jsonl": (0.98, 0.95, 0.73),
    "blind-2026-12-02-e-es.jsonl": (0.98, 1.0, 0.67),
    "blind-2026-12-02-f-en.jsonl": (1.0, 1.0, 0.59),
    "blind-2026-12-02-f-es.jsonl": (1.0, 1.0, 0.50),
    "blind-2026-12-02-g-en.jsonl": (0.98, 1.0, 0.61),
    "blind-2026-12-02-g-es.jsonl": (1.0, 1.0, 0.70),
    "blind-2026-12-02-h-en.jsonl": (0.98, 1.0, 0.66),
    "blind-2026-12-02-h-es.jsonl": (1.0, 1.0, 0.68),
    "blind-2026-12-03-i-en.jsonl": (1.0, 1.0, 0.62),
    "blind-2026-12-03-i-es.jsonl": (1.0, 1.0, 0.67),
    "blind-2026-12-03-j-en.jsonl": (1.0, 1.0, 0.74),
    "blind-2026-12-03-j-es.jsonl": (1.0, 1.0, 0.58),
    "blind-2026-12-03-k-en.jsonl": (1.0, 1.0, 0.80),
    "blind-2026-12-03-k-es.jsonl": (1.0, 1.0, 0.72),
    "blind-2026-12-03-l-en.jsonl": (1.0, 0.96, 0.71),
    "blind-2026-12-03-l-es.jsonl": (1.0, 1.0, 0.64),
    "blind-2026-12-03-m-en.jsonl": (1.0, 1.0, 0.67),
    "blind-2026-12-03-m-es.jsonl": (1.0, 1.0, 0.71),
    "blind-2026-12-03-n-en.jsonl": (1.0, 1.0, 0.68),
    "blind-2026-12-03-n-es.jsonl": (0.98, 1.0, 0.70),
    "blind-2026-12-03-o-en.jsonl": (0.98, 0.96, 0.70),
    "blind-2026-12-03-o-es.jsonl": (1.0, 1.0, 0.60),
    "blind-2026-12-03-p-en.jsonl": (1.0, 0.96, 0.70),
    "blind-2026-12-03-p-es.jsonl": (0.98, 1.0, 0.77),
    "blind-2026-12-03-q-en.jsonl": (1.0, 0.96, 0.70),
    "blind-2026-12-03-q-es.jsonl": (0.95, 1.0, 0.74),
    "blind-2026-12-03-r-en.jsonl": (1.0, 1.0, 0.72),
    "blind-2026-12-03-r-es.jsonl": (1.0, 1.0, 0.60),
    "blind-2026-12-03-s-en.jsonl": (1.0, 1.0, 0.67),
    "blind-2026-12-03-s-es.jsonl": (1.0, 1.0, 0.54),
    "blind-2026-12-03-t-en.jsonl": (1.0, 0.96, 0.62),
    "blind-2026-12-03-t-es.jsonl": (1.0, 1.0, 0.62),
    "blind-2026-12-04-u-en.jsonl": (1.0, 0.92, 0.64),
    "blind-2026-12-04-u-es.jsonl": (0.98, 1.0, 0.70),
    "blind-2026-12-04-v-en.jsonl": (1.0, 1.0, 0.61),
    "blind-2026-12-04-v-es.jsonl": (1.0, 1.0, 0.54),
    "blind-2026-12-04-w-en.jsonl": (0.98, 1.0, 0.70),
    "blind-2026-12-04-w-es.jsonl": (1.0, 1.0, 0.62),
    "blind-2026-12-04-x-en.jsonl": (0.98, 1.0, 0.71),
    "blind-2026-12-04-x-es.jsonl": (0.98, 1.0, 0.77),
    "blind-2026-12-04-y-en.jsonl": (0.97, 1.0, 0.65),
    "blind-2026-12-04-y-es.jsonl": (0.95, 1.0, 0.55),
    "blind-2026-12-04-z-en.jsonl": (0.98, 1.0, 0.72),
    "blind-2026-12-04-z-es.jsonl": (1.0, 1.0, 0.77),
    # session 25: read with their "received_on" (the writers were told the replies arrive in early December 2026)
    "blind-2026-12-04-aa-en.jsonl": (1.0, 1.0, 0.74),
    "blind-2026-12-04-aa-es.jsonl": (0.95, 0.96, 0.64),
    "blind-2026-12-04-ab-en.jsonl": (0.92, 1.0, 0.75),
    "blind-2026-12-04-ab-es.jsonl": (0.96, 0.96, 0.78),
    "blind-2026-12-04-ac-en.jsonl": (0.98, 1.0, 0.84),
    "blind-2026-12-04-ac-es.jsonl": (0.95, 1.0, 0.74),
    # session 26: measured once on 5180a51, then after the session's fixes (floors at those figures)
    "blind-2026-12-05-ad-en.jsonl": (1.0, 1.0, 0.77),
    "blind-2026-12-05-ad-es.jsonl": (0.98, 1.0, 0.67),
    "blind-2026-12-05-ae-en.jsonl": (1.0, 1.0, 0.82),
    "blind-2026-12-05-ae-es.jsonl": (1.0, 1.0, 0.65),
}


@pytest.fixture(scope="module")
def screen() -> Screen:
    return Screen.from_file(CRITERIA)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_blind_set_floor(screen: Screen, name: str) -> None:
    """Escalation recall, emergency recall and specificity on a retired blind set stay at or above its floor."""
    cases = [json.loads(line) for line in (BLIND / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    got = {}
    for case in cases:
        text = extract_reply(case["text"]) if case.get("channel") == "email" else case["text"]
        today = date.fromisoformat(case["received_on"]) if "received_on" in case else None  # sets from AA on
        got[case["id"]] = screen.assess(text, ReplyContext(today=today)).level
    escalations = [c for c in cases if c["gold"] in ("emergency", "red_flag")]
    emergencies = [c for c in cases if c["gold"] == "emergency"]
    benign = [c for c in cases if c["gold"] == "none"]
    recall = sum(got[c["id"]] != "none" for c in escalations) / len(escalations)
    emergency = sum(got[c["id"]] in c["accept"] for c in emergencies) / len(emergencies)
    specificity = sum(got[c["id"]] in c["accept"] for c in benign) / len(benign)
    floor = FLOORS[name]
    figures = (recall, emergency, specificity)
    assert all(v >= f for v, f in zip(figures, floor, strict=True)), f"{name}: {figures} below {floor}"
