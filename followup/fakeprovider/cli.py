"""Command line: run the fake provider in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from followup.fakeprovider.dev_keys import (
    DEV_EVENT_PUBLIC_KEY,
    DEV_SENDGRID_API_KEY,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
)
from followup.fakeprovider.faults import Faults
from followup.fakeprovider.provider import FakeProvider

ENV_ACCOUNT_SID = "FOLLOWUP_TWILIO__ACCOUNT_SID"
ENV_AUTH_TOKEN = "FOLLOWUP_TWILIO__AUTH_TOKEN"  # noqa: S105 - an env var name, not a secret
ENV_API_KEY = "FOLLOWUP_SENDGRID__API_KEY"
# Where the service listens by default (settings: server.public_url) and its Event Webhook route.
DEFAULT_EVENTS_URL = "http://127.0.0.1:8000/webhooks/sendgrid/events"
DEMO_FROM_NUMBER = "+15005550006"  # any number works with the fake; this is Twilio's test "from"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m followup.fakeprovider",
        description="Fake Twilio + SendGrid for local runs. Credentials come from "
        f"{ENV_ACCOUNT_SID}, {ENV_AUTH_TOKEN}, {ENV_API_KEY}, else fake dev defaults.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    p.add_argument(
        "--events-url",
        default=DEFAULT_EVENTS_URL,
        help="where SendGrid events are posted; '' to post none (default: %(default)s)",
    )
    p.add_argument("--latency-ms", type=int, default=0, help="added to every API answer")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction of API requests answered 5xx")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--status-delay", type=float, default=0.0, help="seconds before each status callback/event")
    p.add_argument("-v", "--verbose", action="store_true", help="log each API answer's status (never content)")
    return p


def provider_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[FakeProvider, dict[str, str]]:
    """Build the provider, and the credentials it accepts, from parsed arguments and the environment."""
    creds = {
        ENV_ACCOUNT_SID: env.get(ENV_ACCOUNT_SID) or DEV_TWILIO_ACCOUNT_SID,
        ENV_AUTH_TOKEN: env.get(ENV_AUTH_TOKEN) or DEV_TWILIO_AUTH_TOKEN,
        ENV_API_KEY: env.get(ENV_API_KEY) or DEV_SENDGRID_API_KEY,
    }
    fp = FakeProvider(
        host=args.host,
        port=args.port,
        twilio_account_sid=creds[ENV_ACCOUNT_SID],
        twilio_auth_token=creds[ENV_AUTH_TOKEN],
        sendgrid_api_key=creds[ENV_API_KEY],
        events_url=args.events_url or None,
        status_delay_s=args.status_delay,
        seed=args.seed,
    )
    fp.set_faults(Faults(latency_ms=args.latency_ms, error_rate=args.error_rate))
    return fp, creds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake in the foreground until Ctrl-C or SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # Only our own logger goes verbose: other libraries' debug lines may carry URLs with numbers.
    logging.getLogger("followup.fakeprovider").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        fp, creds = provider_from_args(args, os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fp.start()
    try:
        _print_banner(fp.url, creds, args.events_url)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        threading.Event().wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        fp.stop()
    return 0


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_banner(url: str, creds: dict[str, str], events_url: str | None) -> None:
    """Say where to point the SDKs. Values taken from the environment are not echoed."""
    print(f"fake provider listening on {url}")
    print("  Twilio:   client.api.base_url = URL   (POST /2010-04-01/Accounts/{sid}/Messages.json)")
    print("  SendGrid: SendGridAPIClient(key, host=URL)   (POST /v3/mail/send)")
    print(f"  SendGrid events -> {events_url or '(none)'}")
    print("Set these for the service (fake dev values, not secrets):")
    for name, value in creds.items():
        print(f"  {name}=<from your environment>" if os.environ.get(name) else f"  export {name}={value}")
    print(f"  export FOLLOWUP_TWILIO__API_BASE={url}")
    print(f"  export FOLLOWUP_TWILIO__FROM_NUMBER={DEMO_FROM_NUMBER}")
    print(f"  export FOLLOWUP_SENDGRID__API_BASE={url}")
    print(f"DEV-ONLY event webhook public key: {DEV_EVENT_PUBLIC_KEY}")
    print("Inspect: GET /_fake/messages  /_fake/stats  /_fake/faults   Ctrl-C stops.", flush=True)
