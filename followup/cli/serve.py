"""`followup serve`: the web app and the dispatcher in one process, on a port taken before anything else starts.

The port is bound first, so a busy port is one line naming the option and the setting to change, not the URL
banner followed by uvicorn's bare "[Errno 98]" (issue 12). The public URL follows the host and port actually served
unless `server.public_url` is set, so a second instance on `--port 8001` sends booking links to 8001.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

import click

from followup.cli._common import runtime_of, settings_of
from followup.settings import Settings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


class ListenError(click.ClickException):
    """The address cannot be listened on; the message names what to change."""


def served_settings(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings with `--host` / `--port` applied (the public URL follows them unless it was set)."""
    given = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if not given:
        return settings
    try:
        return settings.with_overrides(server=given)
    except ValueError as exc:
        raise click.ClickException(f"--host / --port: {exc}") from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line ListenError saying which setting or option to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is already in use (another followup?): stop it, or serve on another port "
                f"with `followup serve --port {port + 1}` or server.port in settings.toml (FOLLOWUP_SERVER__PORT)"
            ) from None
        if exc.errno == errno.EACCES:
            raise ListenError(
                f"not allowed to listen on port {port}: ports below 1024 need privileges; choose another with "
                f"`followup serve --port` or server.port in settings.toml (FOLLOWUP_SERVER__PORT)"
            ) from None
        raise ListenError(
            f"cannot listen on {host}:{port} ({exc.strerror}): check server.host in settings.toml "
            f"(FOLLOWUP_SERVER__HOST) or `followup serve --host`"
        ) from None
    return sock


def banner(settings: Settings) -> list[tuple[str, bool]]:
    """The lines printed at start, each with whether it goes to stderr (warnings do)."""
    base = settings.server.public_url
    sms = "Twilio" if settings.twilio_configured else "outbox (var/outbox/sms.jsonl)"
    email = "SendGrid" if settings.sendgrid_configured else "outbox (var/outbox/email.jsonl)"
    lines = [
        (f"followup {settings.security.environment}: database {settings.database.url.split('@')[-1]}", False),
        (f"  SMS via {sms}; email via {email}", False),
        (f"  intake page   {base}/intake", False),
        (f"  dashboard     {base}/dashboard   (account: `followup staff add --email you@clinic --role admin`)", False),
        (f"  API docs      {base}/docs   (API token: `followup token create`)", False),
        (f"  health        {base}/healthz", False),
    ]
    clinic = settings.clinic
    if settings.oncall_configured:
        who = [f"{len(clinic.oncall_sms)} by SMS"] * bool(clinic.oncall_sms) + [
            f"{len(clinic.oncall_email)} by email"
        ] * bool(clinic.oncall_email)
        lines.append(
            (f"  on-call       escalations alert {' and '.join(who)} (clinic.oncall_sms / oncall_email)", False)
        )
    else:
        lines.append(
            (
                "  WARNING: no on-call contact (clinic.oncall_sms / clinic.oncall_email): escalations reach no one but "
                "the dashboard. One is required once Twilio or SendGrid is configured.",
                True,
            )
        )
    if settings.server.public_url_derived and (settings.twilio_configured or settings.sendgrid_configured):
        lines.append(
            (
                f"  WARNING: server.public_url is not set: links and webhook signatures use {base}, which Twilio and "
                "SendGrid cannot reach (FOLLOWUP_SERVER__PUBLIC_URL)",
                True,
            )
        )
    return lines


# What a web process started by `--workers` reads from its environment (set by the parent before it forks).
_DISPATCH_ENV = "FOLLOWUP_SERVE_DISPATCH"


def check_workers(settings: Settings, workers: int) -> None:
    """Several web processes need PostgreSQL: refuse SQLite with a message that says why and what to do."""
    if workers > 1 and not settings.database.url.startswith("postgresql"):
        raise click.ClickException(
            f"--workers {workers} needs PostgreSQL (database.url / FOLLOWUP_DATABASE__URL): SQLite lets one process "
            "write at a time, so several web processes (and the dispatchers in them) would queue on its file lock, "
            "and a burst of webhooks would end in 'database is locked' after the 30 s busy timeout instead of being "
            "served. On SQLite run one web process (`--workers 1`, the default)."
        )


def worker_app() -> FastAPI:
    """The app in one of the `--workers` processes (uvicorn imports this factory in each): the settings from the
    same file and environment as the parent; dispatcher or not as the parent was told."""
    from followup.web.app import create_app

    settings = load_settings()
    background = os.environ.get(_DISPATCH_ENV, "1") == "1"
    return create_app(runtime=runtime_of(settings), background=background, act_on_replies=background)


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: server.port).")
@click.option(
    "--no-dispatch", is_flag=True, help="Web only: leave sending and acting on replies to `followup worker` processes."
)
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations at start.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Web processes sharing the port (uvicorn's supervisor). More than 1 needs PostgreSQL.",
)
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, no_dispatch: bool, no_migrate: bool, workers: int
) -> None:
    """Run the web app and the scheduler (dispatcher) in one process, or in each of `--workers` processes."""
    import uvicorn

    from followup.db import upgrade
    from followup.web.app import create_app

    settings = served_settings(settings_of(ctx), host, port)
    check_workers(settings, workers)
    sock = bind(settings.server.host, settings.server.port)
    try:
        if not no_migrate:
            upgrade(settings.database.url)
        for line, to_stderr in banner(settings):
            click.echo(line, err=to_stderr)
        if workers == 1:
            app = create_app(runtime=runtime_of(settings), background=not no_dispatch, act_on_replies=not no_dispatch)
            config = uvicorn.Config(app, log_config=None, access_log=False)
            uvicorn.Server(config).run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        # The processes are spawned: they read what this one was given from the environment.
        given = ctx.find_root().obj.get("settings_path")
        os.environ.update(
            {
                **({"FOLLOWUP_SETTINGS": str(given)} if given else {}),
                **({"FOLLOWUP_SERVER__HOST": host} if host else {}),
                **({"FOLLOWUP_SERVER__PORT": str(port)} if port else {}),
                _DISPATCH_ENV: "0" if no_dispatch else "1",
            }
        )
        where = "dispatching in each" if not no_dispatch else "no dispatcher, no reply worker (run `followup worker`)"
        click.echo(f"  web processes {workers} on one port, {where}", err=False)
        config = uvicorn.Config(
            "followup.cli.serve:worker_app", factory=True, workers=workers, log_config=None, access_log=False
        )
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
