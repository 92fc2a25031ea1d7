"""API tokens for staff and the clinic's record system: shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select

from followup.models import ApiToken
from followup.runtime import Runtime
from followup.services import audit

PREFIX = "fu_"


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(rt: Runtime, name: str) -> tuple[int, str]:
    raw = PREFIX + secrets.token_urlsafe(32)
    now = rt.clock.now()
    with rt.db.session() as s:
        tok = ApiToken(name=name, token_hash=_hash(raw), created_at=now)
        s.add(tok)
        s.flush()
        assert tok.id is not None
        audit.record(s, now, "cli", "token.created", f"token:{tok.id}", name=name)
        s.commit()
        return tok.id, raw


def verify_token(rt: Runtime, raw: str) -> ApiToken | None:
    if not raw.startswith(PREFIX):
        return None
    with rt.db.session() as s:
        tok = s.exec(
            select(ApiToken).where(ApiToken.token_hash == _hash(raw), col(ApiToken.revoked_at).is_(None))
        ).first()
        return tok


def revoke_token(rt: Runtime, token_id: int) -> bool:
    now = rt.clock.now()
    with rt.db.session() as s:
        tok = s.get(ApiToken, token_id)
        if tok is None or tok.revoked_at is not None:
            return False
        tok.revoked_at = now
        audit.record(s, now, "cli", "token.revoked", f"token:{token_id}")
        s.commit()
        return True


def list_tokens(rt: Runtime) -> list[ApiToken]:
    with rt.db.session() as s:
        return list(s.exec(select(ApiToken).order_by(col(ApiToken.id))).all())
