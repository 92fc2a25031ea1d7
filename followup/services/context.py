"""The variables a message template sees. Names are first names only; nothing clinical beyond the answers."""

from __future__ import annotations

from typing import Any

from followup.models import Message, Patient
from followup.runtime import Runtime


def first_name(name: str) -> str:
    return name.split()[0] if name.split() else name


def message_context(rt: Runtime, msg: Message, patient: Patient | None, answers: dict[str, Any]) -> dict[str, Any]:
    clinic = {"name": rt.settings.clinic.name, "phone": rt.settings.clinic.phone}
    ctx: dict[str, Any] = {"clinic": clinic}
    if patient is not None:
        ctx["patient"] = {"first_name": first_name(patient.name), "language": patient.language}
        ctx["answers"] = {**answers, "eyelid_only": set(answers.get("locations") or []) == {"eyelid"}}
    step = next((s for s in rt.program.steps if s.id == msg.step_id), None)
    ctx["week"] = step.week if step else 1
    ctx.update(msg.context or {})
    return ctx
