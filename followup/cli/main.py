"""The `followup` command line."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from followup.cli._common import runtime_of, settings_of
from followup.cli.importing import import_file
from followup.cli.redflags import redflags
from followup.cli.serve import serve
from followup.cli.staff import staff
from followup.logs import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Settings file (default: $FOLLOWUP_SETTINGS or ./settings.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG (still without patient data).")
@click.pass_context
def cli(ctx: click.Context, settings_path: Path | None, verbose: bool) -> None:
    """followup: SMS and email follow-up for patients with muscle twitching, with red-flag escalation."""
    ctx.ensure_object(dict)
    ctx.obj["settings_path"] = settings_path
    setup_logging(verbose)


@cli.command()
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations at start.")
@click.pass_context
def worker(ctx: click.Context, no_migrate: bool) -> None:
    """Run only the scheduler and dispatcher (no web): scale sending apart from the web app. Any number of
    workers can share one PostgreSQL database."""
    import signal
    import threading

    from followup.db import upgrade
    from followup.jobs import DispatchLoop

    settings = settings_of(ctx)
    if not no_migrate:
        upgrade(settings.database.url)
    rt = runtime_of(settings)
    loop = DispatchLoop(rt)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop.start()
    click.echo(f"worker {loop.dispatcher.owner} dispatching every {settings.dispatch.interval_seconds}s", err=True)
    stop.wait()
    loop.stop()


@cli.command()
@click.option("--patients", type=click.IntRange(1), default=200, show_default=True, help="Synthetic patients.")
@click.option("--days", type=click.IntRange(1), default=30, show_default=True, help="Virtual days to run.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    default=None,
    help="Virtual start, UTC (default 2027-02-22T08:00: DST changes fall inside the run).",
)
@click.option(
    "--tick-minutes",
    type=click.FloatRange(0.5, 60),
    default=5.0,
    show_default=True,
    help="How often the dispatcher runs, in virtual minutes (idle stretches are skipped).",
)
@click.option(
    "--reply-rate", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Share of check-ins answered."
)
@click.option(
    "--red-flag-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Share of answers that report a red flag.",
)
@click.option(
    "--stop-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True, help="Share of answers that are STOP."
)
@click.option("--database-url", default=None, help="Default: a throwaway SQLite file. An EMPTY database only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object, on the last line.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option(
    "--no-read-ahead",
    is_flag=True,
    help="Embed every reply inline instead of the next tick's in a second process (same outcome, one core).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    patients: int,
    days: int,
    seed: int,
    start: datetime | None,
    tick_minutes: float,
    reply_rate: float,
    red_flag_rate: float,
    stop_rate: float,
    database_url: str | None,
    as_json: bool,
    no_progress: bool,
    no_read_ahead: bool,
) -> None:
    """Run the program for a synthetic cohort on a virtual clock (real enrollment, dispatcher, replies and
    escalation; an in-process fake provider). Exits 1 if an invariant is not zero."""
    from followup.cli.simulate import run_simulate_command

    settings = settings_of(ctx)
    code = run_simulate_command(
        settings,
        patients=patients,
        days=days,
        seed=seed,
        start=start,
        tick_minutes=tick_minutes,
        rates={"reply": reply_rate, "red_flag": red_flag_rate, "stop": stop_rate},
        database_url=database_url,
        as_json=as_json,
        progress=not no_progress,
        read_ahead=not no_read_ahead,
    )
    sys.exit(code)


@cli.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply database migrations."""
    from followup.db import upgrade

    settings = settings_of(ctx)
    upgrade(settings.database.url, revision)
    click.echo(f"database at {revision}")


@cli.command("fake-provider", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--port", type=int, default=8025, show_default=True)
@click.pass_context
def fake_provider(ctx: click.Context, port: int) -> None:
    """Run a local fake of Twilio and SendGrid (for the demo, tests and benchmarks). `--help` lists its options
    after `--`, e.g. `followup fake-provider --port 8025 -- --latency-ms 50`."""
    from followup.fakeprovider import main

    sys.exit(main(["--port", str(port), *ctx.args]))


@cli.group()
def token() -> None:
    """API tokens for the clinic's systems and staff."""


@token.command("create")
@click.option("--name", default="clinic", show_default=True, help="Who or what will use it.")
@click.pass_context
def token_create(ctx: click.Context, name: str) -> None:
    """Create an API token; it is printed once, as the last line."""
    from followup.db import upgrade
    from followup.services.tokens import create_token

    settings = settings_of(ctx)
    upgrade(settings.database.url)
    token_id, raw = create_token(runtime_of(settings), name)
    click.echo(f"token {token_id} ({name}) created; use it as `Authorization: Bearer <token>`:", err=True)
    click.echo(raw)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List tokens (never their values)."""
    from followup.services.tokens import list_tokens

    for t in list_tokens(runtime_of(settings_of(ctx))):
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        click.echo(f"{t.id}\t{t.name}\tcreated {t.created_at:%Y-%m-%d}\t{state}")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token by id."""
    from followup.services.tokens import revoke_token

    if not revoke_token(runtime_of(settings_of(ctx)), token_id):
        raise click.ClickException(f"no active token {token_id}")
    click.echo(f"token {token_id} revoked")


@cli.group()
def templates() -> None:
    """Message templates."""


@templates.command("check")
@click.pass_context
def templates_check(ctx: click.Context) -> None:
    """Render every template with sample data; print SMS segments; fail on errors or SMS over two segments."""
    from followup.content.pages import check_pages
    from followup.content.templates import Templates, check_all
    from followup.core.keywords import load_keywords

    settings = settings_of(ctx)
    announce = load_keywords(settings.clinic.keywords).announce
    rows = check_all(Templates(settings.clinic.templates), announce=announce)
    bad = 0
    for r in rows:
        seg = f"{r.segments} seg {r.encoding}" if r.channel == "sms" else "-"
        mark = "FAIL " + (r.problem or "") if r.problem else "ok"
        bad += bool(r.problem)
        click.echo(f"{r.language}/{r.name}.{r.channel:<6} {seg:<14} {mark}")
    for problem in check_pages(settings.clinic.templates, list(settings.clinic.languages)):
        bad += 1
        click.echo(f"FAIL {problem}")
    click.echo(f"{len(rows)} templates, {bad} problems")
    if bad:
        sys.exit(1)


@cli.command()
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help="Read one JSON object per line on stdin; write one verdict per line.")
@click.option("--channel", type=click.Choice(["sms", "email"]), default="sms", show_default=True)
@click.pass_context
def check(ctx: click.Context, text: str | None, jsonl: bool, channel: str) -> None:
    """Red-flag verdict for a reply: `followup check "my arm feels weaker"` or `followup check --jsonl`."""
    from followup.cli.check import format_verdict, run_check
    from followup.parsing.mailtext import extract_reply
    from followup.redflags import ArtefactError, CriteriaError, Screen

    settings = settings_of(ctx)
    try:
        detector = Screen.from_file(settings.clinic.red_flags)
    except (ArtefactError, CriteriaError) as exc:
        raise click.ClickException(str(exc)) from None
    if jsonl:
        sys.exit(run_check(sys.stdin, sys.stdout, detector))
    if text is None:
        raise click.UsageError("give a text, or --jsonl to read stdin")
    body = extract_reply(text) if channel == "email" else text
    click.echo(format_verdict(detector.assess(body)))


@cli.group()
def patient() -> None:
    """One patient's data: export it, erase it."""


@patient.command("export")
@click.argument("patient_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (created 0600).")
@click.pass_context
def patient_export(ctx: click.Context, patient_id: int, out: Path | None) -> None:
    """Print everything held on one patient as JSON (records, messages in and out, escalations, audit)."""
    import json

    from followup.files import open_private
    from followup.services.privacy import NotFound, export_patient

    try:
        data = export_patient(runtime_of(settings_of(ctx)), patient_id)
    except NotFound:
        raise click.ClickException(f"no patient {patient_id}") from None
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out is None:
        click.echo(text)
        return
    with open_private(out, append=False) as fh:  # 0600: the export is the patient's whole record
        fh.write(text + "\n")
    click.echo(f"patient {patient_id} written to {out} (mode 0600)", err=True)


@patient.command("erase")
@click.argument("patient_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--by", "operator", default="cli", show_default=True, help="Who asked for it (kept in the audit log).")
@click.pass_context
def patient_erase(ctx: click.Context, patient_id: int, yes: bool, operator: str) -> None:
    """Delete one patient and everything held on them; the audit log keeps that it was done, by whom, and how
    many rows went. It cannot be undone (export first if the record must be kept elsewhere)."""
    from followup.services.privacy import NotFound, erase_patient

    rt = runtime_of(settings_of(ctx))
    if not yes:
        click.confirm(f"Erase patient {patient_id} and everything held on them? This cannot be undone", abort=True)
    try:
        counts = erase_patient(rt, patient_id, actor=f"cli:{operator}"[:100])
    except NotFound:
        raise click.ClickException(f"no patient {patient_id}") from None
    click.echo(f"patient {patient_id} erased: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n))


cli.add_command(import_file)
cli.add_command(redflags)
cli.add_command(serve)
cli.add_command(staff)


def main() -> None:
    cli(obj={})
