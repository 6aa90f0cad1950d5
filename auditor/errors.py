"""One shallow error tree. An `AuditorError` means the user's input is wrong: the CLI prints it on one
line and exits with `ExitCode.BAD_INPUT`; anything else is a bug of ours or of the model."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `auditor` command (documented in the README)."""

    OK = 0
    POLICY_FAILED = 1
    BAD_INPUT = 2
    INTERNAL_ERROR = 3


class AuditorError(Exception):
    """The user's input is wrong; the message says what and where, in one line."""


class ModelLoadError(AuditorError):
    """The model path, factory or weights could not produce a module."""


class DataError(AuditorError):
    """The audit data is missing, empty, malformed, or does not fit the model."""


class ConfigError(AuditorError):
    """The configuration file or the command-line options are invalid."""


class PolicyError(AuditorError):
    """The policy file is invalid, or names a metric the audit does not have (and the rule is not optional)."""
