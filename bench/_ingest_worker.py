"""A `followup worker` for the benchmarks, in its own process: the dispatcher and the ingest worker (replies acted
on, woken by NOTIFY on PostgreSQL; delivery events applied in batches), with the bench's settings.

python bench/_ingest_worker.py DATABASE_URL PORT [FAKE_PROVIDER_URL]

With a fake provider URL, SMS go to it through the real Twilio SDK (the on-call alert the end-to-end figure waits
for); without, to the outbox. Runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from _common import FROM_NUMBER
from _inbound_server import settings_for

from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from followup.jobs import DispatchLoop
from followup.runtime import build_runtime


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    settings = settings_for(url, port)
    overrides: dict[str, dict[str, object]] = {
        # The pacing of one long code (10/s) would queue the on-call alert behind the day's thank-yous: the figure
        # is about the worker, not the sender's rate (a Messaging Service pool in production).
        "dispatch": {"interval_seconds": 1.0, "per_sender_per_second": 10_000.0},
    }
    if len(sys.argv) > 3:
        overrides["twilio"] = {
            "account_sid": DEV_TWILIO_ACCOUNT_SID,
            "auth_token": DEV_TWILIO_AUTH_TOKEN,
            "from_number": FROM_NUMBER,
            "api_base": sys.argv[3],
        }
    rt = build_runtime(settings.with_overrides(**overrides))
    _ = rt.detector  # loaded before the load starts, as `followup serve` warms it
    loop = DispatchLoop(rt)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loop.start()
    print("worker ready", flush=True)
    stop.wait()
    loop.stop()


if __name__ == "__main__":
    main()
