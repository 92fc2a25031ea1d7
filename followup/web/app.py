"""The web application: `create_app(settings)` builds everything from one settings object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from followup import __version__
from followup.core.storable import storable_json
from followup.runtime import Runtime, build_runtime
from followup.services import health
from followup.services.ops import FigureCache
from followup.settings import Settings
from followup.web import api, assets, booking, confirm, dashboard, fhir, headers, intake, limits, ops, signin, webhooks

log = logging.getLogger("followup.web")


def _warm(rt: Runtime) -> None:
    try:
        rt.detector  # noqa: B018 - a cached property: this loads it
    except Exception:  # the first reply will raise it again, where it is handled and logged
        log.exception("red-flag detector failed to load")


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    background: bool = True,
    act_on_replies: bool | None = None,
) -> FastAPI:
    """`background=False` leaves the dispatcher and the reply worker off (tests drive the dispatcher by hand;
    `followup worker` runs both apart). Who acts on a reply the webhooks stored: this process's reply worker when
    it runs one; else, with `act_on_replies` (the default without `background`), the request itself after its
    answer is sent; `act_on_replies=False` (`serve --no-dispatch`): `followup worker` processes, woken by NOTIFY."""
    if runtime is None:
        assert settings is not None
        runtime = build_runtime(settings)
    rt = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if background and rt.settings.dispatch.enabled:
            from followup.jobs import DispatchLoop

            loop = DispatchLoop(rt)
            loop.start()
        if background:
            # Load the red-flag detector (rules, sentence encoder, language models: seconds) before taking traffic,
            # not inside the first patient's webhook, where the provider's timeout may be shorter than the load.
            await asyncio.to_thread(_warm, rt)
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()

    # The interactive docs pages run scripts from a CDN on this origin, where staff are signed in: development
    # only. The schema itself (/openapi.json) stays: it describes routes, every one of which checks its caller.
    docs = rt.settings.security.environment != "production"
    app = FastAPI(
        title="followup",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        description="Follows up patients with muscle twitching by SMS and email, and escalates red flags.",
    )
    app.state.runtime = rt
    app.state.act_after_answer = (not background) if act_on_replies is None else act_on_replies
    app.state.figures_cache = FigureCache(rt.settings.metrics.figures_cache_seconds)
    # The last added is the outermost: bodies are bounded before the sender limits read an inbound SMS, and every
    # answer (a 413 or 429 of the limits included) gets the security headers.
    app.add_middleware(signin.BusyGate, rt=rt)
    app.add_middleware(limits.SenderLimits, rt=rt)
    app.add_middleware(
        limits.BodyLimit,
        default=rt.settings.server.max_body_bytes,
        per_path={limits.INBOUND_EMAIL: rt.settings.sendgrid.inbound_max_bytes},
    )
    app.add_middleware(ops.WebhookTimer)
    app.add_middleware(headers.SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422, with the echoed input made encodable: a JSON "\ud800" would otherwise be a 500."""
        return JSONResponse({"detail": storable_json(jsonable_encoder(exc.errors()))}, status_code=422)

    app.include_router(api.router)
    app.include_router(fhir.router)
    app.include_router(webhooks.router)
    app.include_router(intake.router)
    app.include_router(booking.router)
    app.include_router(confirm.router)
    app.include_router(signin.router)
    app.include_router(assets.router)
    app.include_router(dashboard.router)
    app.include_router(ops.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """Liveness and database reachability."""
        if not health.database_reachable(rt):
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/intake")

    return app
