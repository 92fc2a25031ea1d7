"""`followup import FILE`: enroll a clinic's patients from a CSV or NDJSON file (services/bulk_import.py).

Rejected rows are printed to stderr as they come (line, field, problem; never a number, address or name); progress
goes to stderr on a terminal; the summary is the last line on stdout. Exit status: 0 when no row was rejected, 1
otherwise (the good rows are enrolled either way, and a rerun after fixing the file enrolls no one twice).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from followup.cli._common import runtime_of, settings_of


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--chunk", type=click.IntRange(1, 5000), default=500, show_default=True, help="Rows per transaction.")
@click.option("--by", "operator", default="cli", show_default=True, help="Who runs it (kept in the audit log).")
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations first.")
@click.pass_context
def import_file(ctx: click.Context, file: Path, chunk: int, operator: str, no_migrate: bool) -> None:
    """Enroll patients from FILE: CSV with a header (the triage's fields, flat, plus external_id) or NDJSON (one
    POST /api/triage body a line, plus external_id). A rerun enrolls no one twice (external_id is unique)."""
    from followup.db import upgrade
    from followup.parsing.import_file import FileError, read_rows
    from followup.services.bulk_import import Outcome, Tally, import_rows

    settings = settings_of(ctx)
    if not no_migrate:
        upgrade(settings.database.url)
    rt = runtime_of(settings)
    started = time.monotonic()
    tty = sys.stderr.isatty()

    def report(o: Outcome) -> None:
        if o.status == "rejected":
            ext = f" ({o.external_id})" if o.external_id else ""
            click.echo(f"{'' if not tty else chr(13)}line {o.where}{ext}: {o.field}: {o.message}", err=True)

    def progress(t: Tally) -> None:
        if tty:
            rate = t.rows / max(time.monotonic() - started, 1e-9)
            click.echo(
                f"\r{t.rows:,} rows, {t.enrolled + t.escalated:,} enrolled, {rate:,.0f} rows/s ", nl=False, err=True
            )

    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            tally = import_rows(
                rt,
                read_rows(file, fh),
                actor=f"cli:{operator}"[:100],
                chunk_size=chunk,
                report=report,
                progress=progress,
            )
    except FileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    finally:
        rt.db.dispose()
    if tty:
        click.echo("", err=True)
    seconds = time.monotonic() - started
    new = tally.enrolled + tally.escalated
    click.echo(
        f"enrolled {tally.enrolled}, escalated {tally.escalated}, already {tally.already}, rejected {tally.rejected} "
        f"({tally.rows} rows in {seconds:.1f} s, {new / seconds if seconds else 0:,.0f} patients/s)"
    )
    if tally.rejected:
        sys.exit(1)
