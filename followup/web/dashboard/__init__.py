"""The staff dashboard under /dashboard: escalations, patients, overview, admin pages, and the patient-phone
demo. Every route depends on a staff session (see followup.web.staffauth)."""

from fastapi import APIRouter

from followup.web.dashboard import account, admin, assets, escalations, ops, overview, patients, phone, visits

router = APIRouter(include_in_schema=False)
for module in (escalations, patients, overview, visits, admin, ops, phone, assets, account):
    router.include_router(module.router)

__all__ = ["router"]
