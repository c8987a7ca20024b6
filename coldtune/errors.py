"""Errors coldtune raises on purpose.

Every message says what was wrong, where, and what to do; the CLI prints it as
one line and exits with status 2, so a user never reads a traceback for bad input.
"""


class ColdtuneError(Exception):
    """Base class: a problem with the user's input or workspace, not a bug."""


class ParameterError(ColdtuneError, ValueError):
    """A parameter out of its range or of the wrong kind."""


class PlaysFormatError(ColdtuneError):
    """A play-count file that cannot be read as (user, song, count) rows."""


class WorkspaceError(ColdtuneError):
    """An artefact a step needs is missing from the workspace, or is inconsistent."""


class NotFoundError(ColdtuneError, LookupError):
    """A song, user or model id that the workspace does not know."""
