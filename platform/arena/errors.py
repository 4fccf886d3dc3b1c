"""Every failure Arena expects, under one base class, each with the HTTP status it means.

An expected failure is a message for a person: bad input, something that does not exist,
something the caller may not do, an action that conflicts with the state, or the platform
itself unable to go on (no Docker engine). The CLI prints any ``ArenaError`` as one red line with exit code 1, and
the web app answers it with its ``status`` and the message, each in one place
(``cli.reported_errors``, ``web.app``); anything else is a bug and keeps its traceback.
The domain's own errors (``DatasetError``, ``SubmissionError``...) derive from these
kinds, so callers catch the kind and the message stays specific.
"""


class ArenaError(Exception):
    """An expected failure; ``str()`` is the sentence shown to the person."""

    status: int = 400


class InputError(ArenaError, ValueError):
    """What was given cannot be used as it is (an archive, a CSV, a name, a setting)."""

    status = 422


class NotFoundError(ArenaError, LookupError):
    """What was named does not exist."""

    status = 404


class ForbiddenError(ArenaError):
    """The caller may not do this, or not now (uploads closed, leaderboards hidden, another team's logs)."""

    status = 403


class QuotaError(ArenaError):
    """The caller may do this again, but not yet (an upload quota is used up); ``retry_at``
    says when, for the message and the HTTP Retry-After header."""

    status = 429

    def __init__(self, message: str, retry_at=None):
        super().__init__(message)
        self.retry_at = retry_at


class ConflictError(ArenaError):
    """The action does not fit the current state (already there, already running)."""

    status = 409


class PlatformError(ArenaError, RuntimeError):
    """The platform could not do its part (no Docker engine, a tool missing): not the caller's fault.

    Its message is for the people who run the platform (the CLI prints it, the web app logs
    it): it may quote the engine's own words, with its API version and paths. The web answers
    ``public`` instead, which says what happened to the caller and nothing of the host."""

    status = 503
    public = "the platform failed at its part (the organizers have the details in its log): try again later"
