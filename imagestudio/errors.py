"""Errors a user can act on. Every way in (CLI, HTTP) turns these into a clear
message and an exit code / 4xx status instead of a traceback."""


class StudioError(Exception):
    """Base class: `str(err)` is a sentence meant for the user."""

    #: HTTP status the server answers with; the CLI exits with `exit_code`.
    http_status = 400
    exit_code = 2


class RequestError(StudioError):
    """A request value is invalid (size, prompt length, unknown sampler...)."""


class ImageError(RequestError):
    """An uploaded/referenced image cannot be used (not an image, too large...)."""


class ModelNotFound(StudioError):
    http_status = 404
    exit_code = 3


class UnsafeCheckpoint(StudioError):
    """A pickled checkpoint needs more than torch's restricted loader allows."""

    http_status = 422
    exit_code = 3


class ModelLoadError(StudioError):
    http_status = 500
    exit_code = 3


class Cancelled(StudioError):
    """Raised between steps when a job's cancel token is set."""

    http_status = 409
    exit_code = 130
