"""Errors the front answers with: an HTTP status that says whose fault it is, and OpenAI's error shape.

Every error body is `{"error": {"message", "type", "param", "code"}}` (what the openai SDK parses);
`param` names the request field at fault (`input[2]`, `dimensions`), or is null.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from starlette.responses import Response


class ApiError(Exception):
    """A request the front refuses or cannot serve; `status` < 500 is the client's fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")

    def response(self) -> Response:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return Response(orjson.dumps({"error": body}), self.status, media_type="application/json")


def invalid(param: str, message: str) -> ApiError:
    """422: the field `param` has a value the front cannot use."""
    return ApiError(422, f"{param}: {message}", param)


def too_large(param: str, message: str) -> ApiError:
    """413: too many inputs, a text over the model's limit, or a body over the size limit."""
    return ApiError(413, f"{param}: {message}", param)
