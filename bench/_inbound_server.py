"""The server side of bench/inbound.py, run in its own process under uvicorn.

python bench/_inbound_server.py app    DATABASE_URL PORT  # the web app as `serve --no-dispatch` runs it: stores and
                                                          # answers; `followup worker` processes act (_ingest_worker)
python bench/_inbound_server.py single DATABASE_URL PORT  # the single-process default: web, reply worker thread
                                                          # and dispatcher in one process (`followup serve`)
python bench/_inbound_server.py bare   DATABASE_URL PORT  # one bare endpoint on the same stack
"""

from __future__ import annotations

import sys

import uvicorn
from _common import ROOT
from fastapi import FastAPI, Request, Response

from followup.settings import Settings

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def settings_for(url: str, port: int) -> Settings:
    return Settings().with_overrides(
        server={"public_url": f"http://127.0.0.1:{port}"},
        database={"url": url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
            "oncall_sms": ["+13105550199"],
        },
        security={"secret_key": "bench-" + "k" * 40},
        # The per-sender flood limit would drop most of the load (few senders, many replies each) on its cheap path:
        # raise it so every request takes the whole path. The limiter still runs.
        limits={"inbound_sms_per_minute": 10_000},
    )


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/twilio/sms")
    async def sms(request: Request) -> Response:
        form = await request.form()
        _ = form.get("Body")
        return Response(EMPTY_TWIML, media_type="application/xml")

    return app


def main() -> None:
    mode, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "bare":
        app = bare_app()
    else:
        from followup.web.app import create_app

        if mode == "single":
            app = create_app(settings_for(url, port))
        else:
            app = create_app(settings_for(url, port), background=False, act_on_replies=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
