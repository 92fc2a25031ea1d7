"""Which triage answers are red flags on their own (clinic/intake.toml), decided without I/O."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from followup.core.triage import Answers


@dataclass(frozen=True)
class IntakeFlag:
    answer: str  # the triage field
    criterion: str  # the red-flag criterion id (clinic/red_flags.toml)
    evidence: str  # what the clinic reads in the escalation


@dataclass(frozen=True)
class IntakeRules:
    flags: tuple[IntakeFlag, ...]
    persisting_weeks: float
    persisting_criterion: str

    def red_flags(self, answers: Answers) -> list[IntakeFlag]:
        data = answers.model_dump()
        found = [f for f in self.flags if data.get(f.answer) is True]
        if answers.onset_weeks >= self.persisting_weeks:
            found.append(
                IntakeFlag("onset_weeks", self.persisting_criterion, f"twitching for {answers.onset_weeks:g} weeks")
            )
        return found


def load_intake_rules(path: Path) -> IntakeRules:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    fields = set(Answers.model_fields)
    flags = []
    for answer, spec in data.get("answers", {}).items():
        if answer not in fields:
            raise ValueError(f"{path}: answers.{answer}: not a triage question")
        if not isinstance(spec, dict) or "criterion" not in spec:
            raise ValueError(f'{path}: answers.{answer}: needs criterion = "<red-flag id>"')
        flags.append(IntakeFlag(answer, str(spec["criterion"]), str(spec.get("evidence", answer))))
    dur = data.get("duration", {})
    return IntakeRules(tuple(flags), float(dur.get("persisting_weeks", 4)), str(dur.get("criterion", "persisting")))
