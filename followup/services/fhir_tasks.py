"""A Task sent back from the clinic's system (PUT /fhir/Task/<id>) acknowledges, books or closes its escalation,
through the same service as the dashboard and /api, audited under the token that sent it."""

from __future__ import annotations

from typing import Any

from followup.fhir.outcome import refuse
from followup.fhir.resources import task_action
from followup.runtime import Runtime
from followup.services import fhir_read
from followup.services import patients as svc


def update_task(rt: Runtime, rid: str, sent: Any, actor: str) -> dict[str, Any]:
    """The Task as it stands after the action its new status asks for. Raises FhirError: a Task that is not
    there (not_found), not valid (structure, rule), or a step the escalation cannot take from where it is
    (conflict); nothing changes then."""
    try:
        current = fhir_read.read(rt, "Task", rid)
    except fhir_read.NotFound:
        raise refuse("not_found", "Task", f"no Task with id {rid[:64]!r}", "not-found") from None
    action, note = task_action(current, sent)
    if action is not None:
        try:
            svc.change_escalation(rt, int(rid), action, actor, note if action == "close" else None)
        except svc.Conflict as exc:
            raise refuse("conflict", "Task.status", str(exc), "business-rule") from None
    return fhir_read.read(rt, "Task", rid)
