"""The `followup` command line: `main` is the console script; each subcommand group has its own module."""

from followup.cli.main import cli, main

__all__ = ["cli", "main"]
