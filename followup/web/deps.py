"""Request dependencies: the runtime, and bearer-token authentication for the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from followup.models import ApiToken
from followup.runtime import Runtime
from followup.services.tokens import verify_token

_bearer = HTTPBearer(auto_error=False, description="A token from `followup token create`")


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_token(rt: RuntimeDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiToken:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    tok = verify_token(rt, creds.credentials)
    if tok is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return tok


TokenDep = Annotated[ApiToken, Depends(require_token)]


def actor(tok: ApiToken) -> str:
    return f"token:{tok.id}"


MAX_ID = 2**31 - 1  # ids and offsets past what the database's integers hold are refused (422), not a 500
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
