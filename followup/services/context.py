"""The variables a message template sees. Names are first names only; nothing clinical beyond the answers."""

from __future__ import annotations

from typing import Any

from followup.core.sms import gsm_safe, is_gsm7
from followup.core.vocab import Channel
from followup.models import Message, Patient
from followup.runtime import Runtime

SMS_NAME_CHARS = 20


def first_name(name: str) -> str:
    return name.split()[0] if name.split() else name


def sms_first_name(name: str) -> str:
    """The first name as an SMS can carry it: one character outside GSM-7 ("Zoë", "Łukasz") would switch the
    whole text to UCS-2 and halve its length, so such names are transliterated; long ones are shortened."""
    first = first_name(name)
    if not is_gsm7(first):
        first = gsm_safe(first).strip() or "there"
    return first[:SMS_NAME_CHARS]


def message_context(rt: Runtime, msg: Message, patient: Patient | None, answers: dict[str, Any]) -> dict[str, Any]:
    clinic = {"name": rt.settings.clinic.name, "phone": rt.settings.clinic.phone}
    ctx: dict[str, Any] = {"clinic": clinic}
    if patient is not None:
        name = sms_first_name(patient.name) if msg.channel == Channel.SMS else first_name(patient.name)
        ctx["patient"] = {"first_name": name, "language": patient.language}
        ctx["answers"] = {**answers, "eyelid_only": set(answers.get("locations") or []) == {"eyelid"}}
    step = next((s for s in rt.program.steps if s.id == msg.step_id), None)
    ctx["week"] = step.week if step else 1
    ctx.update(msg.context or {})
    return ctx
