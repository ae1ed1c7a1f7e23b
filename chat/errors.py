"""The one error type services raise; the REST handler and the consumer map it."""


class AppError(Exception):
    status = 400

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        # Fields the REST answer carries beside `detail` (decide-all's `refused`).
        self.extra = extra


class Invalid(AppError):
    status = 400


class Forbidden(AppError):
    status = 403


class NotFound(AppError):
    status = 404


class Conflict(AppError):
    status = 409


class TooMany(AppError):
    """A limit on what one user may have at once or spend (contract: "Limits")."""

    status = 429
