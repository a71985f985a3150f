"""Answers to requests that aiohttp refuses before any middleware runs.

A request line or header aiohttp cannot parse (a header over 8 KB, a control character, a
method that is not a token) never reaches the application: aiohttp's connection handler
answers it with a plain-text 400 and logs the client's mistake at ERROR with a traceback.
aiohttp offers no hook for that answer, so the services swap in a connection handler whose
``handle_error`` answers with the same JSON error envelope as every other error and logs a
client's mistake as one warning line.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import http_exceptions, web, web_server
from aiohttp.web_protocol import RequestHandler

from .errors import ApiError
from .http import error_response

log = logging.getLogger(__name__)


# What was wrong, said without echoing the client's bytes: the parser's own messages quote
# the offending line, which may be an Authorization header.
PROBLEMS: tuple[tuple[type[BaseException], str], ...] = (
    (http_exceptions.LineTooLong, "the request line or a header is too long"),
    (http_exceptions.InvalidHeader, "a header is not valid"),
    (http_exceptions.BadHttpMethod, "the method is not valid"),
    (http_exceptions.BadStatusLine, "the request line is not valid"),
    (http_exceptions.InvalidURLError, "the URL is not valid"),
    (http_exceptions.PayloadEncodingError, "the body's transfer encoding is not valid"),
)


def problem(exc: BaseException | None) -> str:
    for kind, text in PROBLEMS:
        if isinstance(exc, kind):
            return text
    return "it is not valid HTTP"


class JsonErrorRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status < 500:
            log.warning(
                "refused a malformed request from %s: %d, %s (%s)",
                request.remote,
                status,
                problem(exc),
                type(exc).__name__,
            )
            error = ApiError(status, f"The request is malformed: {problem(exc)}.")
        else:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            error = ApiError(status, HTTPStatus(status).phrase + ".", code="internal")
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started; the connection is closed instead")
        response = error_response(error)
        response.force_close()
        return response


def answer_malformed_requests_in_json() -> None:
    """Make every aiohttp server of this process use ``JsonErrorRequestHandler``.

    ``web.Server`` creates its connection handlers from the module's ``RequestHandler``
    name; both services call this in ``create_app`` (it is idempotent).
    """
    web_server.RequestHandler = JsonErrorRequestHandler  # type: ignore[attr-defined]
