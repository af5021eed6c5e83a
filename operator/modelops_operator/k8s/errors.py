"""Typed errors of the Kubernetes API client."""

from __future__ import annotations

from typing import Any

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(
        self, status: int, reason: str, message: str, *, method: str = "", path: str = ""
    ) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path

    @property
    def transient(self) -> bool:
        """Worth retrying later unchanged: throttling, server errors, an unreachable server."""
        return self.status == 0 or self.status in TRANSIENT_STATUSES


class NotFoundError(ApiError):
    """404: the object (or the resource) does not exist."""


class ConflictError(ApiError):
    """409: the object already exists, or a resourceVersion precondition failed."""


class UnauthorizedError(ApiError):
    """401: the credentials were refused (even after re-reading them)."""


class ForbiddenError(ApiError):
    """403: RBAC does not grant the call (see k8s.permissions.REQUIRED_RULES)."""


class BadRequestError(ApiError):
    """400: the request itself was malformed for the server (e.g. a field of the wrong type)."""


class InvalidError(ApiError):
    """422: the object was rejected by validation (schema, CEL, admission)."""


class UnavailableError(ApiError):
    """The server could not be reached or kept failing after every retry."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidError,
}


def error_for(status: int, body: Any, *, method: str, path: str) -> ApiError:
    """The typed error of an API response, with the reason and message of its Status body."""
    reason = ""
    message = ""
    if isinstance(body, dict):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or "")
    elif isinstance(body, str):
        message = body[:500]
    cls = _BY_STATUS.get(status, UnavailableError if status in TRANSIENT_STATUSES else ApiError)
    return cls(status, reason or "Error", message, method=method, path=path)
