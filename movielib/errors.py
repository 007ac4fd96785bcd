"""Errors a user can act on: each names what is wrong and is raised before any work starts."""


class MovielibError(Exception):
    """Base class for errors reported to the user without a traceback."""

    exit_code = 2  # the command's exit status (2: what the user gave is wrong)


class ConfigError(MovielibError):
    """A config field, CLI option or model spec is invalid; the message names the field."""


class TrialsFailed(MovielibError):
    """Every trial of a sweep (or the one trial of a run) failed; the message is a trial's own error."""

    exit_code = 1


class StorageError(MovielibError):
    """A source or destination cannot be listed, read or written (missing bucket, no endpoint)."""
