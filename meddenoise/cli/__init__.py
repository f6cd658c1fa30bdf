"""The command line: the only package that prints or sets exit codes.

Every command is a thin face on ``meddenoise.pipeline``. Bad data raises a MeddenoiseError deep
down; here it becomes one line on stderr and exit code 1 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import traceback

import typer

# Importing the command modules registers their commands (grouped in --help by panel).
from meddenoise.cli import pacs_commands, series_commands, server_commands
from meddenoise.cli.app import STATE, app
from meddenoise.errors import MeddenoiseError

__all__ = ["app", "main", "pacs_commands", "series_commands", "server_commands"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 bad data, 2 usage, 130 interrupted)."""
    try:
        # Standalone mode turns every click/typer signal (usage error, Exit, Abort) into SystemExit,
        # whichever click typer uses (recent typer vendors its own); only our errors propagate.
        app(args=argv, prog_name="meddenoise")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        if code == 130:
            typer.echo("interrupted", err=True)
        return code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except (MeddenoiseError, ValueError, OSError) as error:
        if STATE["debug"]:
            traceback.print_exc()
        typer.echo("error: " + " ".join(str(error).splitlines()), err=True)
        return 1
    return 0
