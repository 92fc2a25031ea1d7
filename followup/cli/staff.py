"""`followup staff`: staff accounts for the dashboard (add, list, disable, enable, passwd, sessions, totp-reset,
unlock). Every change is audited with the actor "cli"."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from followup.cli._common import runtime_of, settings_of
from followup.core.vocab import StaffRole

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
    type=click.Choice([r.value for r in StaffRole]),
    default=StaffRole.CLINICIAN.value,
    show_default=True,
    help="Admins also see the audit log and manage staff accounts.",
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
    """List staff accounts (never their passwords): id, email, role, state, second factor."""
    from followup.services.staff import list_staff

    rt = _runtime(ctx)
    for u in list_staff(rt):
        state = "disabled" if u.disabled_at else "active"
        factor = "totp" if u.totp_enabled_at else "-"
        click.echo(f"{u.id}\t{u.email}\t{u.role}\t{state}\t{factor}")


def _act(ctx: click.Context, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a staff service call with the actor "cli", turning its refusals into a clear error."""
    from followup.services.staff import StaffError

    try:
        return fn(_runtime(ctx), *args, "cli")
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None


@staff.command("disable")
@click.option("--email", required=True)
@click.pass_context
def staff_disable(ctx: click.Context, email: str) -> None:
    """Disable an account: it cannot sign in, and its sessions end now."""
    from followup.services.staff import disable

    _act(ctx, disable, email)
    click.echo(f"{email} disabled; its sessions have ended")


@staff.command("enable")
@click.option("--email", required=True)
@click.pass_context
def staff_enable(ctx: click.Context, email: str) -> None:
    """Enable a disabled account again."""
    from followup.services.staff import enable

    _act(ctx, enable, email)
    click.echo(f"{email} enabled")


@staff.command("passwd")
@click.option("--email", required=True)
@click.pass_context
def staff_passwd(ctx: click.Context, email: str) -> None:
    """Set an account's password (prompted, or the first line of stdin); its sessions end."""
    from followup.services.staff import set_password

    password = read_password()
    _act(ctx, set_password, email, password)
    click.echo(f"password set for {email}; its sessions have ended")


@staff.command("sessions")
@click.option("--email", required=True)
@click.option("--revoke", is_flag=True, help="End every open session of the account now.")
@click.pass_context
def staff_sessions(ctx: click.Context, email: str, revoke: bool) -> None:
    """List an account's open sessions (id, started, last seen, expires), or end them all with --revoke."""
    from followup.services.staff import StaffError, open_sessions, revoke_sessions

    if revoke:
        ended = _act(ctx, revoke_sessions, email)
        click.echo(f"{ended} session(s) of {email} ended")
        return
    try:
        rows = open_sessions(_runtime(ctx), email)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None
    fmt = "%Y-%m-%d %H:%M"
    for sess in rows:
        times = (sess.created_at, sess.last_seen_at, sess.expires_at)
        click.echo("\t".join([str(sess.id), *(t.strftime(fmt) for t in times)]))
    click.echo(f"{len(rows)} open session(s)")


@staff.command("totp-reset")
@click.option("--email", required=True)
@click.pass_context
def staff_totp_reset(ctx: click.Context, email: str) -> None:
    """Remove an account's second factor (a lost phone); they set up a new one after signing in."""
    from followup.services.totp import reset

    _act(ctx, reset, email)
    click.echo(f"second factor of {email} reset")


@staff.command("unlock")
@click.option("--email", required=True)
@click.pass_context
def staff_unlock(ctx: click.Context, email: str) -> None:
    """Forget an account's recent failed sign-ins and codes, so its owner need not wait them out."""
    from followup.services.staff import unlock

    _act(ctx, unlock, email)
    click.echo(f"{email} unlocked")
