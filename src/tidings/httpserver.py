"""aiohttp's HTTP server as tidings runs it: malformed requests answered with the right
status, and logged as the client's doing, through tidings' own handler.

aiohttp's parser refuses a request whose headers are too large, or that has too many, or
whose request line is too long, but answers every such request ``400 Bad Request``.
RFC 6585 and RFC 9110 have codes that tell the client what to fix: ``431 Request Header
Fields Too Large`` and ``414 URI Too Long``. ``Runner`` is an ``AppRunner`` whose
connections answer those.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

HEADERS_TOO_LARGE: Final = 431
URI_TOO_LONG: Final = 414
# Where aiohttp's C parser raises LineTooLong for the request target (the request line);
# for a header name or value it is raised from the header callbacks.
_URL_CALLBACK: Final = "cb_on_url"
_TOO_MANY_HEADERS: Final = "Too many headers received"


def parse_status(exc: BaseException | None) -> int | None:
    """The status a request aiohttp's parser refused deserves, when it is not 400:
    431 for a header line too long or too many headers, 414 for a request line too long.
    """
    if isinstance(exc, LineTooLong):
        tb = exc.__traceback__
        while tb is not None:
            # Cython names its frames by qualified name: "aiohttp._http_parser.cb_on_url".
            if tb.tb_frame.f_code.co_name.rpartition(".")[2] == _URL_CALLBACK:
                return URI_TOO_LONG
            tb = tb.tb_next
        # aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) does not say which line it
        # was: a header is by far the likelier.
        return HEADERS_TOO_LARGE
    if isinstance(exc, BadHttpMessage) and exc.message == _TOO_MANY_HEADERS:
        return HEADERS_TOO_LARGE
    return None


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's connection-level log, passed to it as its ``logger``.

    A malformed request (2,000 headers, an 8 KiB request line, TLS on the plain port) and
    a client that disconnects mid-request are the client's doing: aiohttp answers them
    (400, 414, 431) and would log a traceback at ERROR for each, so one anonymous request
    could fill the log. They become one INFO line, without the request's bytes (a token
    may be in them). Anything else keeps its level and goes through tidings' own handler.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if level >= logging.ERROR and isinstance(exc, HttpProcessingError | ConnectionError):
            status = parse_status(exc) or getattr(exc, "code", None) or "-"
            self.logger.info("bad request: %s (%s)", exc.__class__.__name__, status)
            return
        self.logger.log(level, msg, *args, **kwargs)


class _Handler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        better = parse_status(exc) if status == 400 else None
        if better is not None:
            status = better
            message = "431 Request Header Fields Too Large" if better == 431 else "414 URI Too Long"
        return super().handle_error(request, status, exc, message)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An ``AppRunner`` whose connections answer 431 and 414 where aiohttp says 400."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server in Application._make_handler; its connections come
        # from Server.__call__, which this subclass only points at _Handler.
        server.__class__ = _Server
        return server
