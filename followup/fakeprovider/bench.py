"""Measure how fast the real SDKs can send through the fake (the fake runs in its own process).

python -m followup.fakeprovider.bench --threads 32 --count 5000 [--latency-ms 50] [--channel email]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from followup.fakeprovider.dev_keys import DEV_SENDGRID_API_KEY, DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN


def _sms_sender(url: str) -> Callable[[int], None]:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(
                DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, http_client=TwilioHttpClient(timeout=10)
            )
            local.client.api.base_url = url
        local.client.messages.create(to=f"+1555{i % 10_000_000:07d}", from_="+15550000001", body="Bench")

    return send


def _email_sender(url: str) -> Callable[[int], None]:
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Mail

    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = SendGridAPIClient(DEV_SENDGRID_API_KEY, host=url)
            local.client.client.timeout = 10
        mail = Mail("clinic@example.org", f"p{i}@example.org", "Bench", plain_text_content="Bench")
        local.client.send(mail)

    return send


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m followup.fakeprovider.bench")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--channel", choices=("sms", "email"), default="sms")
    args = p.parse_args(argv)

    cmd = [sys.executable, "-m", "followup.fakeprovider", "--port", "0", "--events-url", ""]
    cmd += ["--latency-ms", str(args.latency_ms)]
    fake = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module, fixed args
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().rsplit(" ", 1)[-1].strip()
        send = (_sms_sender if args.channel == "sms" else _email_sender)(url)
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(send, range(min(args.threads, args.count))))  # warm connections up
            started = time.perf_counter()
            list(pool.map(send, range(args.count)))
            elapsed = time.perf_counter() - started
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    rate = args.count / elapsed
    print(
        f"{args.channel}: {args.count} sends, {args.threads} threads, latency {args.latency_ms} ms: "
        f"{elapsed:.2f} s, {rate:.0f}/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
