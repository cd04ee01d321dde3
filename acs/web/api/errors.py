"""API errors as JSON: a code, a message a person can act on, and for bad bodies
the path of each bad field."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError


class ErrorDetail(BaseModel):
    path: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "errors": self.errors}}
        return web.json_response(body, status=self.status, headers=headers)


def from_validation(exc: ValidationError, prefix: str = "") -> ApiError:
    errors = [
        {
            "path": ".".join([prefix] * bool(prefix) + [str(p) for p in e["loc"]]),
            "message": e["msg"],
        }
        for e in exc.errors()
    ]
    return ApiError(400, "invalid_body", "the request body is invalid", errors)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what}")
