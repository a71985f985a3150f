"""The services' HTTP connection handler: limits a client cannot outlast, and the JSON error
envelope and ``X-Trace-Id`` on answers that no middleware gives.

aiohttp answers some requests before any middleware runs: a request line or header it cannot
parse (plain text, logged at ERROR with a traceback), an ``Expect`` it does not know (a
plain-text 417). It has no time limit on a request's headers or body (its keep-alive timeout
is an hour), no cap on connections, and reads a body until it passes ``client_max_size``
whatever its ``Content-Length`` said. aiohttp offers no hook for any of these, so the services
swap in a connection handler (``JsonErrorRequestHandler``) that:

- answers what aiohttp answers itself with the JSON envelope, and logs a client's mistake as
  one warning line;
- puts ``X-Trace-Id`` on every answer (the request's trace, or a new one);
- answers 408, then closes, when a request's headers have not all arrived within the header
  timeout of its first byte, or its body within the body timeout of its headers;
- answers 413 to a ``Content-Length`` above the body limit before reading any of the body;
- answers 503 with ``Retry-After`` to a connection past the cap, and closes it.

The limits reach it as ``handler_args`` of the application (see ``service_app``).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, http_exceptions, web, web_server
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from .errors import ApiError
from .http import error_response
from .tracing import TRACE_ID_HEADER, start

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

# What the answers aiohttp raises before the middlewares run say (by default, the reason).
RAISED_EARLY = {417: "Only 'Expect: 100-continue' is supported."}

# Seconds a client refused at the connection cap is asked to wait.
RETRY_AFTER = 1


def problem(exc: BaseException | None) -> str:
    for kind, text in PROBLEMS:
        if isinstance(exc, kind):
            return text
    return "it is not valid HTTP"


class BodyTimeout(ApiError, TimeoutError):
    """A request's body did not all arrive in time. Raised by the body's reads; a
    ``TimeoutError`` too, which aiohttp's lingering read of an unread body ends on."""

    def __init__(self, timeout: float) -> None:
        super().__init__(408, f"The request's body did not arrive within {timeout:g} s.")


def answer_bytes(error: ApiError, **headers: str) -> bytes:
    """An error answer in the envelope, as bytes written straight to a connection that has no
    request to answer (the connection is closed after it)."""
    response = error_response(error)
    body = response.body
    assert isinstance(body, bytes)
    lines = [
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
        f"Content-Type: {response.headers[hdrs.CONTENT_TYPE]}",
        f"Content-Length: {len(body)}",
        f"{TRACE_ID_HEADER}: {start().trace_id}",
        "Connection: close",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class JsonErrorRequestHandler(RequestHandler):
    def __init__(
        self,
        manager: web_server.Server,
        *,
        header_timeout: float | None = None,
        body_timeout: float | None = None,
        max_connections: int | None = None,
        max_body_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._max_connections = max_connections
        self._max_body_bytes = max_body_bytes
        self._refused = False
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    # The connection cap.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        if (
            self._max_connections is not None
            and manager is not None
            and len(manager.connections) >= self._max_connections
        ):
            self._refused = True
            log.warning(
                "refused a connection: %d connections are open already", len(manager.connections)
            )
            assert isinstance(transport, asyncio.Transport)
            error = ApiError(503, "Too many connections; try again shortly.")
            transport.write(answer_bytes(error, Retry_After=str(RETRY_AFTER)))
            # What the client sends meanwhile is dropped (data_received); closing only once
            # it has closed its side (or soon after) lets it read the answer rather than a
            # reset.
            if transport.can_write_eof():
                transport.write_eof()
            self._loop.call_later(RETRY_AFTER, transport.close)
            return
        super().connection_made(transport)

    # Timeouts and the early 413.

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        parsing = not self._force_close and not self._close and not self._upgraded
        before = self._request_count
        # Taken before parsing: the bytes that end a body clear its deadline as they are
        # parsed, and are not the start of a next request's headers.
        reading_body = self._body_deadline is not None
        super().data_received(data)
        if not parsing:
            return
        arrived = self._request_count - before
        if arrived:
            self._cancel(self._header_deadline)
            self._header_deadline = None
            # The messages this data completed are at the end of the queue: nothing ran
            # since they were put there.
            queue = self._messages
            for index in range(len(queue) - arrived, len(queue)):
                message, payload = queue[index]
                if isinstance(message, RawRequestMessage):
                    queue[index] = self._checked(message, payload)
        elif (
            data
            and self._header_timeout is not None
            and not reading_body
            and self._header_deadline is None
        ):
            # Part of a request's headers (a body's bytes arrive while its deadline runs).
            self._header_deadline = self._loop.call_later(self._header_timeout, self._headers_late)

    def _checked(
        self, message: RawRequestMessage, payload: StreamReader
    ) -> tuple[RawRequestMessage | _ErrInfo, StreamReader]:
        length = message.headers.get(hdrs.CONTENT_LENGTH)
        limit = self._max_body_bytes
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            # Answered before any of the body is read; aiohttp then reads and drops what the
            # client goes on sending for a while (lingering), so that it reads the answer.
            error = ApiError(413, f"The body is larger than {limit} bytes.")
            return _ErrInfo(status=413, exc=error, message=error.message), payload
        if not payload.is_eof() and self._body_timeout is not None:
            self._cancel(self._body_deadline)
            self._body_deadline = self._loop.call_later(
                self._body_timeout, self._body_late, payload
            )
            payload.on_eof(self._body_arrived)
        return message, payload

    def _body_arrived(self) -> None:
        self._cancel(self._body_deadline)
        self._body_deadline = None

    def _body_late(self, payload: StreamReader) -> None:
        self._body_deadline = None
        if payload.is_eof() or payload.exception() is not None:
            return  # read, or given up by its handler
        timeout = self._body_timeout
        assert timeout is not None  # set only when there is one
        log.info("a request's body did not arrive within %g s", timeout)
        # Its reader answers 408 in the envelope; the connection is closed after the answer.
        payload.set_exception(BodyTimeout(timeout))
        self.close()

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._force_close or self._close:
            return
        if self._request_in_progress or self._messages:
            self.close()  # the answer in progress is the connection's last
            return
        log.info("a request's headers did not arrive within %g s", self._header_timeout)
        error = ApiError(
            408, f"The request's headers did not arrive within {self._header_timeout:g} s."
        )
        if self.transport is not None:
            self.transport.write(answer_bytes(error))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel(self._header_deadline)
        self._cancel(self._body_deadline)
        if self._refused:
            return
        super().connection_lost(exc)

    @staticmethod
    def _cancel(deadline: asyncio.TimerHandle | None) -> None:
        if deadline is not None:
            deadline.cancel()

    # The envelope and the trace id on what no middleware answers.

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # Raised before the middlewares ran, e.g. by the Expect header's handler.
            message = RAISED_EARLY.get(resp.status, f"{resp.reason}.")
            resp = error_response(ApiError(resp.status, message))
            resp.force_close()
        if (
            isinstance(resp, web.StreamResponse)
            and not resp.prepared
            and TRACE_ID_HEADER not in resp.headers
        ):
            trace = request.get("trace")
            resp.headers[TRACE_ID_HEADER] = (trace or start()).trace_id
        return await super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, ApiError):  # a limit of ours, not a mistake in the HTTP
            log.info("refused a request from %s: %d, %s", request.remote, status, exc.message)
            error = exc
        elif status < 500:
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
