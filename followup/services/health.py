"""Whether this process can reach its database: the answer behind `/healthz`."""

from __future__ import annotations

from sqlalchemy import text

from followup.runtime import Runtime


def database_reachable(rt: Runtime) -> bool:
    try:
        with rt.db.session() as s:
            s.connection().execute(text("SELECT 1"))
    except Exception:
        return False
    return True
