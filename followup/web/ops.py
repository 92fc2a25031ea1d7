"""Operations routes: /metrics (Prometheus) and /readyz, and the timing of provider webhooks by route.

/metrics needs an API token (`Authorization: Bearer ...`), unless the caller's address is in
`metrics.allow_addresses` (a named scraper on the private network). /readyz is public like /healthz: it says
ready or not and why, nothing else.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from followup import metrics
from followup.services import ops
from followup.services.tokens import verify_token
from followup.web.deps import RuntimeDep

router = APIRouter(tags=["operations"])
_bearer = HTTPBearer(auto_error=False, description="A token from `followup token create`")


def scraper_allowed(
    request: Request, rt: RuntimeDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """An allowed scraper address, or a live API token; otherwise 401."""
    host = request.client.host if request.client else ""
    allowed = rt.settings.metrics.allow_addresses
    if host and allowed:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in ipaddress.ip_network(a, strict=False) for a in allowed):
            return
    if creds is None or creds.scheme.lower() != "bearer" or verify_token(rt, creds.credentials) is None:
        raise HTTPException(
            401, "a bearer token or an allowed scraper address is required", headers={"WWW-Authenticate": "Bearer"}
        )


@router.get("/metrics", dependencies=[Depends(scraper_allowed)], include_in_schema=False)
async def metrics_page(request: Request, rt: RuntimeDep) -> Response:
    """Prometheus text: counters of this process (all processes in multi-process mode), then database figures."""
    cache: ops.FigureCache = request.app.state.figures_cache
    figures = await run_in_threadpool(cache.get, rt)
    return Response(metrics.exposition(figures), media_type=metrics.CONTENT_TYPE)


@router.get("/readyz", include_in_schema=False)  # for load balancers; 503 by design while not ready
async def readyz(rt: RuntimeDep) -> JSONResponse:
    """Ready: the database answers and a dispatcher finished a pass recently (503 otherwise)."""
    r = await run_in_threadpool(ops.readiness, rt)
    body = {
        "status": "ready" if r.ready else "not ready",
        "database": r.database,
        "dispatcher": r.dispatcher,
        "last_pass_age_seconds": r.last_pass_age_seconds,
    }
    return JSONResponse(body, status_code=200 if r.ready else 503)


class WebhookTimer:
    """Times every request under /webhooks/ by its route (a fixed path: no query, no ids)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            metrics.WEBHOOK_SECONDS.labels(name).observe(time.perf_counter() - started)
