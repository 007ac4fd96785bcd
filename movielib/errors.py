"""Errors a user can act on: each names what is wrong and is raised before any work starts."""


class MovielibError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(MovielibError):
    """A config field, CLI option or model spec is invalid; the message names the field."""


class StorageError(MovielibError):
    """A source or destination cannot be listed, read or written (missing bucket, no endpoint)."""
