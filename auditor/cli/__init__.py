"""The `auditor` command line: `auditor.cli:main` is the console script, `auditor.cli:app` the typer app."""

from auditor.cli.main import app, main

__all__ = ["app", "main"]
