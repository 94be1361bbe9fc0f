"""Domain errors. Each carries the HTTP status and error code the API maps it to (in one place: api.py)."""

from __future__ import annotations

from typing import Any


class RecsysError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ForbiddenError(RecsysError):
    """The caller may not act on this customer (JWT mode: another customer's id, without the admin scope)."""

    status_code = 403
    code = "forbidden"


class NotFoundError(RecsysError):
    status_code = 404
    code = "not_found"


class UnprocessableError(RecsysError):
    """The request is well formed but cannot be applied (unknown products, a list over its size limit)."""

    status_code = 422
    code = "unprocessable"


class ConflictError(RecsysError):
    """Optimistic locking lost on every retry: the client may retry."""

    status_code = 409
    code = "conflict"


class OrderMismatchError(ConflictError):
    """record_purchases: the order_id was recorded before with other purchases or another country."""

    code = "order_mismatch"


class UnavailableError(RecsysError):
    """A dependency (DynamoDB, the model) cannot serve now; the client should retry after ``retry_after`` s."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, details: Any = None, retry_after: int = 1) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class ModelUnavailableError(UnavailableError):
    code = "model_unavailable"


class ConfigurationError(Exception):
    """The function's environment is invalid: raised at init, so the function fails to start with a clear message."""


class VersionConflict(Exception):
    """A conditional write found another version than expected."""
