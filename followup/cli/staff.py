"""`followup staff`: staff accounts for the dashboard (add, list, unlock)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from followup.cli._common import runtime_of, settings_of

if TYPE_CHECKING:
    from followup.runtime import Runtime


def _runtime(ctx: click.Context) -> Runtime:
    from followup.db import upgrade

    settings = settings_of(ctx)
    upgrade(settings.database.url)
    return runtime_of(settings)


def read_password(confirm: bool = True) -> str:
    """Prompted (hidden, twice) at a terminal; the first line of stdin otherwise (scripts, provisioning)."""
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


@click.group()
def staff() -> None:
    """Staff accounts for the dashboard at /dashboard."""


@staff.command("add")
@click.option("--email", required=True, help="The staff member's email (their sign-in name).")
@click.option(
    "--role",
    type=click.Choice(["clinician", "admin"]),
    default="clinician",
    show_default=True,
    help="Admins also see the audit log and the staff list.",
)
@click.pass_context
def staff_add(ctx: click.Context, email: str, role: str) -> None:
    """Add a staff account; the password is prompted, or read from stdin when stdin is not a terminal."""
    from followup.services.staff import StaffError, add_staff

    rt = _runtime(ctx)
    password = read_password()
    try:
        user = add_staff(rt, email, role, password, actor="cli")
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"staff {user.id} {user.email} ({user.role}) added; sign in at {rt.links.login()}")


@staff.command("list")
@click.pass_context
def staff_list(ctx: click.Context) -> None:
    """List staff accounts (never their passwords)."""
    from followup.services.staff import list_staff

    rt = _runtime(ctx)
    now = rt.clock.now()
    for u in list_staff(rt):
        locked = u.locked_until is not None and u.locked_until > now
        state = "disabled" if u.disabled_at else "locked" if locked else "active"
        click.echo(f"{u.id}\t{u.email}\t{u.role}\t{state}")


@staff.command("unlock")
@click.option("--email", required=True)
@click.pass_context
def staff_unlock(ctx: click.Context, email: str) -> None:
    """Unlock an account locked after repeated failed sign-ins."""
    from followup.services.staff import unlock

    if not unlock(_runtime(ctx), email, actor="cli"):
        raise click.ClickException(f"no staff account {email}")
    click.echo(f"{email} unlocked")
