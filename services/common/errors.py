"""Failures both services raise, importable by I/O code without the HTTP layer."""

from __future__ import annotations

from typing import Any

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "validation_failed",
    503: "unavailable",
}


class ApiError(Exception):
    """An expected failure, answered as ``{"error": {"code", "message", "fields"}}``."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, fields: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.fields = fields


class Unavailable(ApiError):
    """A dependency (database, Kafka, the API) is down; nothing was half-written."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)
