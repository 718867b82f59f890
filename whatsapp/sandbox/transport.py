"""A ``requests`` transport adapter that answers from a WSGI app in the same process, with no socket.

Mounted on the Graph client's session for the sandbox's Graph URL, it lets the real client code (headers, JSON,
error parsing, streamed and capped downloads) talk to the fake Graph blueprint whatever the port, the number of
gunicorn workers or the threads each has: a call is answered by the very process that made it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiAdapter(BaseAdapter):
    """Dispatch each prepared request to ``app`` and hand back a complete ``requests.Response``."""

    def __init__(self, app: WsgiApp, environ: Mapping[str, Any] | None = None) -> None:
        """``environ``: extra WSGI environ keys for every call (the sandbox marks its own calls with them)."""
        super().__init__()
        self.app = app
        self.environ = dict(environ or {})

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is not None and not isinstance(body, bytes):
            body = b"".join(body)  # a generator body (chunked upload)
        builder = EnvironBuilder(
            method=request.method or "GET",
            base_url=_origin(request.url or ""),
            path=_path_and_query(request.url or ""),
            headers=list(request.headers.items()),
            data=body or b"",
            environ_base=self.environ,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        app_iter, status, headers = run_wsgi_app(self.app, environ, buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()

        response = requests.Response()
        response.status_code = int(status.split(" ", 1)[0])
        response.reason = status.split(" ", 1)[1] if " " in status else ""
        response.headers = CaseInsensitiveDict(headers.items())
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        """Nothing to release: there is no connection."""


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _path_and_query(url: str) -> str:
    _, _, rest = url.partition("://")
    host_and_path = rest.split("/", 1)
    return "/" + host_and_path[1] if len(host_and_path) > 1 else "/"
