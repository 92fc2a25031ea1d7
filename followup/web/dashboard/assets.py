"""The dashboard's own script files, for signed-in staff only (the CSP allows scripts from this origin alone)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from followup.web.staffauth import StaffDep

router = APIRouter()
STATIC = Path(__file__).resolve().parent.parent / "static"
FILES = {"live-queue.js": "text/javascript; charset=utf-8"}


@router.get("/dashboard/assets/{name}")
def asset(name: str, staff: StaffDep) -> FileResponse:
    """One of the few named files; anything else is 404 (no path from the URL reaches the disk)."""
    if name not in FILES:
        raise HTTPException(404, "no such file")
    return FileResponse(
        STATIC / name,
        media_type=FILES[name],
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
