"""Static files the pages load from this origin (scripts live here, never inline: see web/headers.py).

Only the files named in PUBLIC are served, read once at start; anything else is 404. No directory listing, no path
from the URL reaches the disk.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
# The public pages' files only (the dashboard's own are served to staff by web/dashboard/assets.py).
PUBLIC = {"intake.js": "text/javascript; charset=utf-8"}
FILES = {name: ((STATIC / name).read_bytes(), media_type) for name, media_type in PUBLIC.items()}
router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """One of the few static files, cached for an hour."""
    if name not in FILES:
        raise HTTPException(404, "no such file")
    body, media_type = FILES[name]
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
