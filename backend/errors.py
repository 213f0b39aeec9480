"""The service's exception hierarchy, mapped to HTTP status codes in one place (the API)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the service's deliberate errors."""

    status_code = 400


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    """A conflicting state; ``job_id`` names the job in the way when there is one."""

    status_code = 409

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class RoundError(ConflictError):
    """A round cannot start or close in the project's current state (the message says why)."""


class ForbiddenPathError(ServiceError):
    """An import path outside the configured import roots (or escaping them by a link)."""

    status_code = 403
