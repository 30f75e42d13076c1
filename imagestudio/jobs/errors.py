"""Errors of the job service and the server. Like imagestudio.errors, each
carries the HTTP status it maps to and a message meant for the user."""

from ..errors import StudioError


class InsufficientCredits(StudioError):
    http_status = 402
    exit_code = 4

    def __init__(self, cost: int, balance: int) -> None:
        super().__init__(
            f"this request costs {cost} credits but your balance is {balance}; "
            "ask an administrator to grant more credits, or make fewer/smaller images"
        )
        self.cost = cost
        self.balance = balance


class NotFound(StudioError):
    http_status = 404
    exit_code = 3


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")


class ImageNotFound(NotFound):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"no image {image_id!r}")


class PromptNotFound(NotFound):
    def __init__(self, prompt_id: str) -> None:
        super().__init__(f"no saved prompt {prompt_id!r}")


class UserNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no user named {name!r}")


class NotAuthenticated(StudioError):
    http_status = 401
    exit_code = 4


class PayloadTooLarge(StudioError):
    http_status = 413


class QueueUnavailable(StudioError):
    http_status = 503
