"""What every `followup` subcommand shares: settings from the `--settings` option and a started runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from followup.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from followup.runtime import Runtime


def settings_of(ctx: click.Context) -> Settings:
    """The validated settings, or a one-line error naming the bad key."""
    try:
        return load_settings(ctx.find_root().obj.get("settings_path"))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def runtime_of(settings: Settings) -> Runtime:
    """The runtime, or a one-line error saying why it cannot start."""
    from followup.runtime import StartupError, build_runtime

    try:
        return build_runtime(settings)
    except StartupError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
