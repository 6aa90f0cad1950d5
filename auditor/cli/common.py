"""What every `auditor` command shares: the consoles, one error formatter at the CLI's edge, and usage errors
as one line. Exit codes: 0 done (check: passed), 1 the policy failed, 2 bad input or usage, 3 internal error.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from auditor.errors import AuditorError, ExitCode

out = Console()
err = Console(stderr=True)


def _click_exceptions() -> Any:
    """click's exceptions as this typer raises them (typer >= 0.20 ships its own copy as typer._click)."""
    vendored = getattr(typer.core, "_click", None)
    return vendored.exceptions if vendored is not None else importlib.import_module("click.exceptions")


_CLICK = _click_exceptions()


def say_error(message: str) -> None:
    """The one way the CLI reports bad input: a single `error:` line on stderr (the caller exits 2)."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, `--max-samples 0`) get the same single `error:` line and exit 2 as
    any other bad input, instead of click's boxed usage panel."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except getattr(_CLICK, "NoArgsIsHelpError", ()):
            sys.exit(int(ExitCode.BAD_INPUT))  # the help is already printed
        except _CLICK.ClickException as error:
            ctx = getattr(error, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if isinstance(error, _CLICK.UsageError) and ctx else ""
            say_error(f"{error.format_message()}{hint}")
            sys.exit(int(ExitCode.BAD_INPUT))
        except typer.Abort:
            err.print("Aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # a command's typer.Exit(code), or 0 when it returned


@contextmanager
def exit_codes() -> Iterator[None]:
    """Maps errors to exit codes at the CLI's edge: bad input exits 2 with one line, our bugs exit 3.

    Deprecations of the config reach the user as one `warning:` line each, not as a source location.
    """
    try:
        with warnings.catch_warnings():
            # Only deprecations are held back (once per message) to be said at the end; every other warning goes
            # where it would have gone, when it is raised. Recording all of them and replaying them at the end cost
            # minutes after an audit whose libraries warn in a loop.
            deprecations: dict[str, None] = {}
            show = warnings.showwarning

            def hold(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: TextIO | None = None, line: str | None = None) -> None:
                if issubclass(category, FutureWarning):
                    deprecations[str(message)] = None
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.simplefilter("default", FutureWarning)
            warnings.showwarning = hold
            try:
                yield
            finally:
                for message in deprecations:
                    err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)
    except AuditorError as error:
        say_error(str(error))
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
    except (KeyboardInterrupt, typer.Exit):  # typer.Exit is a RuntimeError: never wrap it
        raise
    except Exception as error:  # a bug of ours or of the model: say so, exit 3
        err.print(f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(str(error))}",
                  soft_wrap=True)
        err.print("[dim]Run with AUDITOR_DEBUG=1 for the traceback; please report it with the command you ran.[/]")
        if os.environ.get("AUDITOR_DEBUG"):
            err.print_exception()
        raise typer.Exit(int(ExitCode.INTERNAL_ERROR)) from None


def reflow(doc: str) -> str:
    """A command's docstring as its --help prints it: each paragraph one line, for the terminal to wrap at its
    width (Typer's rich mode keeps the docstring's line breaks, which then break lines mid-sentence).
    Paragraphs with an indented line (examples, lists) keep their lines."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if any(line.startswith((" ", "-", "\b")) for line in p.splitlines()) else
                       " ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Reflows the help of every command of `app` and of its sub-apps taken from their docstrings."""
    for command in app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = reflow(command.callback.__doc__)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
