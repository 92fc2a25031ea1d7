"""Static files the pages load from this origin (scripts live here, never inline: see web/headers.py).

Only the files in web/static/ at start are served, by name; anything else is 404. No directory listing, no path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
FILES = {p.name: (p.read_bytes(), TYPES[p.suffix]) for p in sorted(STATIC.iterdir()) if p.suffix in TYPES}
router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """One of the few static files, cached for an hour."""
    if name not in FILES:
        raise HTTPException(404, "no such file")
    body, media_type = FILES[name]
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
