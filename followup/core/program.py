"""The follow-up program: steps loaded from TOML (clinic/program.toml), validated once at start."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from followup.core.vocab import PROGRAM_KINDS, MessageKind

_COND = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_DURATION = TypeAdapter(timedelta)


class ProgramError(Exception):
    """The program file is wrong; the message names the step and the key."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: float | bool

    def holds(self, answers: dict[str, Any]) -> bool:
        actual = answers.get(self.field)
        if actual is None:
            return False
        if isinstance(self.value, bool):
            a, v = bool(actual), self.value
            return (a == v) if self.op == "==" else (a != v) if self.op == "!=" else False
        a_num, v_num = float(actual), float(self.value)
        return {
            ">=": a_num >= v_num,
            "<=": a_num <= v_num,
            ">": a_num > v_num,
            "<": a_num < v_num,
            "==": a_num == v_num,
            "!=": a_num != v_num,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.field} {self.op} {str(self.value).lower()}"


@dataclass(frozen=True)
class Step:
    id: str
    kind: MessageKind  # one of PROGRAM_KINDS
    offset: timedelta
    at: time | None  # None: due at enrollment ("now")
    template: str
    when: tuple[Condition, ...] = ()
    question: str | None = None
    label: str = ""  # what staff read for this step (clinic/program.toml); the id when the file gives none

    @property
    def title(self) -> str:
        return self.label or self.id.replace("_", " ")

    def applies(self, answers: dict[str, Any]) -> bool:
        return all(c.holds(answers) for c in self.when)

    @property
    def week(self) -> int:
        return self.offset.days // 7 + 1


@dataclass(frozen=True)
class Program:
    id: str
    name: str
    steps: tuple[Step, ...]

    def steps_for(self, answers: dict[str, Any]) -> list[Step]:
        return [s for s in self.steps if s.applies(answers)]

    def step_title(self, step_id: str | None) -> str | None:
        """The staff label of a step id (None for an id the program does not have, e.g. a removed step)."""
        return next((s.title for s in self.steps if s.id == step_id), None)


def parse_condition(text: str, fields: dict[str, type]) -> Condition:
    m = _COND.match(text)
    if not m:
        raise ValueError(f"{text!r} is not 'field op value' (ops: >= <= > < == !=)")
    name, op, raw = m.groups()
    if name not in fields:
        raise ValueError(f"unknown triage field {name!r} (known: {', '.join(sorted(fields))})")
    value: float | bool
    if raw in ("true", "false"):
        value = raw == "true"
        if op not in ("==", "!="):
            raise ValueError(f"{text!r}: true/false only compare with == or !=")
    else:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{text!r}: value must be a number or true/false") from None
    return Condition(name, op, value)


def load_program(path: Path, fields: dict[str, type]) -> Program:
    """Read and validate the program; `fields` names the triage answers a condition may test."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProgramError(f"{path}: program file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{path}: not valid TOML: {exc}") from exc
    meta = data.get("program", {})
    steps: list[Step] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("steps", [])):
        where = f"{path}: steps[{i}] ({raw.get('id', '?')})"
        try:
            steps.append(_step(raw, fields))
        except (KeyError, ValueError, ValidationError) as exc:
            msg = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ProgramError(f"{where}: {msg}") from None
        if steps[-1].id in seen:
            raise ProgramError(f"{where}: duplicate step id")
        seen.add(steps[-1].id)
    if not steps:
        raise ProgramError(f"{path}: no [[steps]]")
    return Program(id=str(meta.get("id", path.stem)), name=str(meta.get("name", path.stem)), steps=tuple(steps))


def _step(raw: dict[str, Any], fields: dict[str, type]) -> Step:
    unknown = set(raw) - {"id", "kind", "offset", "at", "template", "when", "question", "label"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    sid = str(raw["id"])
    if not re.fullmatch(r"[a-z0-9_]+", sid):
        raise ValueError("id must be lower-case letters, digits and _")
    if raw["kind"] not in PROGRAM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PROGRAM_KINDS)}")
    kind = MessageKind(raw["kind"])
    offset = _offset(raw["offset"])
    at_raw = str(raw.get("at", "now"))
    at = None if at_raw == "now" else _hhmm(at_raw)
    if at is not None and offset.seconds:
        raise ValueError("offset: use whole days (e.g. P3D) with a clock time in 'at'")
    question = raw.get("question")
    if question is not None and kind != MessageKind.CHECKIN:
        raise ValueError("only checkin steps ask a question")
    conditions = raw.get("when", [])
    if not isinstance(conditions, list):
        raise ValueError('when: must be a list of conditions, e.g. ["sleep_hours < 7"]')
    try:
        when = tuple(parse_condition(str(c), fields) for c in conditions)
    except ValueError as exc:
        raise ValueError(f"when: {exc}") from None
    label = raw.get("label", "")
    if not isinstance(label, str) or len(label) > 80:
        raise ValueError("label must be text of at most 80 characters")
    return Step(sid, kind, offset, at, str(raw["template"]), when, question, label.strip())


def _offset(raw: Any) -> timedelta:
    # A bare number would be read as seconds: a clinician writing `offset = 3` means days, so ask for "P3D".
    if not isinstance(raw, str):
        raise ValueError(f'offset must be an ISO 8601 duration such as "P3D", got {raw!r}')
    try:
        offset = _DURATION.validate_python(raw)
    except ValidationError:
        raise ValueError(f'offset must be an ISO 8601 duration such as "P3D", got {raw!r}') from None
    if offset < timedelta(0):
        raise ValueError("offset must not be negative")
    return offset


def _hhmm(text: str) -> time:
    m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text)
    if not m:
        raise ValueError(f"at must be 'now' or HH:MM, got {text!r}")
    return time(int(m[1]), int(m[2]))
