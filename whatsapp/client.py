"""Graph API client: one keep-alive ``requests.Session`` for the process, Meta's failures as ``GraphAPIError``.

Modelled on ``requests`` itself: a small honest surface, errors raised as exceptions that carry the response.
Transient HTTP failures (429, 5xx, refused connections) are retried by urllib3's ``Retry`` inside the
session's adapter. Nothing that may already have reached Meta is resent blindly: read errors are not retried,
and throttling codes inside HTTP 400 answers are raised as retryable so the durable job queue decides when to
try again. The access token never appears in exception text or logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.util.retry import Retry

from .errors import GraphAPIError, MediaRefused, MediaTooLarge
from .media_hosts import META_MEDIA_HOSTS, refusal
from .privacy import clean, tag
from .replies import media_format

log = logging.getLogger("whatsapp.client")

#: HTTP statuses urllib3 retries itself, for GET and POST alike.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Longest Retry-After (seconds) a worker thread will sleep; a longer wait is the job queue's business.
MAX_RETRY_AFTER = 20
#: Size of each read when streaming media: the most a download holds beyond its cap.
DOWNLOAD_CHUNK = 64 * 1024
#: Redirects a media download follows, each hop checked like the first URL.
MAX_MEDIA_REDIRECTS = 3


@dataclass(frozen=True)
class MediaInfo:
    """Answer of a media lookup: where to download the file (the URL expires after 5 minutes)."""

    id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


def retry_policy(retries: int, backoff: float) -> Retry:
    """The urllib3 retry policy mounted on the session.

    Connection failures and the statuses in ``RETRY_STATUSES`` are retried for GET and POST, honouring
    Retry-After (capped at ``MAX_RETRY_AFTER``). Read errors are never retried: the POST may have been
    delivered. ``raise_on_status=False`` hands the last answer back so it is parsed into ``GraphAPIError``.
    """
    return Retry(
        total=retries,
        connect=retries,
        read=False,
        status=retries,
        other=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        retry_after_max=MAX_RETRY_AFTER,
        backoff_factor=backoff,
        backoff_jitter=backoff,
        raise_on_status=False,
    )


class GraphClient:
    """WhatsApp Cloud API calls for one business phone number, safe to share between worker threads."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        graph_url: str = "https://graph.facebook.com",
        api_version: str = "v24.0",
        pool_size: int = 8,
        timeout: tuple[float, float] = (3.05, 30.0),
        retries: int = 3,
        backoff: float = 0.5,
        media_hosts: Sequence[str] = META_MEDIA_HOSTS,
    ) -> None:
        if not access_token:
            raise ValueError("access_token is empty")
        if not phone_number_id:
            raise ValueError("phone_number_id is empty")
        self._token = access_token
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._graph_url = graph_url.rstrip("/")
        self._base = f"{self._graph_url}/{api_version}"
        self._phone_number_id = phone_number_id
        self._media_hosts = tuple(media_hosts)
        self._timeout = timeout
        self._session = requests.Session()
        # requests reads proxies, the CA bundle and ~/.netrc from the environment on every call when trust_env is
        # on: a fifth of a Graph call's CPU. They are read once per host instead (a .netrc entry would only have
        # replaced our token).
        self._session.trust_env = False
        self._environments: dict[tuple[str, str], dict[str, Any]] = {}
        adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=retry_policy(retries, backoff))
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_text(self, to: str, body: str, reply_to: str | None = None, preview_url: bool = False) -> str:
        """Send a text message, threaded as a reply to ``reply_to`` when given; returns the new wamid."""
        return self.send_message(to, {"type": "text", "text": {"preview_url": preview_url, "body": body}}, reply_to)

    def send_message(self, to: str, message: dict, reply_to: str | None = None) -> str:
        """Send one message object (``{"type": ..., <type>: {...}}``) to a customer; returns the new wamid.

        ``to`` is a phone number (wa_id) or, for a customer known only by a username, their business-scoped user id.
        """
        payload: dict[str, Any] = {"recipient_type": "individual", **addressed(to), **message}
        if reply_to:
            payload["context"] = {"message_id": reply_to}
        return self.send(payload)

    def send(self, payload: dict) -> str:
        """POST any ``/messages`` payload (``messaging_product`` is added); returns the new wamid."""
        body = {**payload, "messaging_product": "whatsapp"}
        reply_to = (payload.get("context") or {}).get("message_id")
        what = f"send {payload.get('type', '?')}" + (f" in reply to {tag(reply_to)}" if reply_to else "")
        response = self._request("POST", self._messages_url(), what, json=body)
        data = self._json(response, what)
        try:
            wamid = data["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            wamid = None
        if not isinstance(wamid, str) or not wamid:
            raise self._fail(GraphAPIError("success answer without messages[0].id", status=response.status_code), what)
        return wamid

    def upload_media(self, kind: str, data: bytes, mime_type: str, filename: str = "file") -> str:
        """Upload a file for an ``Image(id=...)``, ``Document(id=...)``...; returns the media id (valid 30 days).

        The MIME type and size are checked against what Meta takes for ``kind`` first (a ``ReplyError`` names the
        limit), so an unsupported file never costs a Graph round trip.
        """
        base = media_format(kind, mime_type, len(data))
        what = f"upload_media {kind}"
        files = {"file": (filename, data, base)}
        form = {"messaging_product": "whatsapp", "type": base}
        response = self._request(
            "POST", f"{self._base}/{quote(self._phone_number_id, safe='')}/media", what, files=files, data=form
        )
        media_id = self._json(response, what).get("id")
        if not isinstance(media_id, str | int) or not str(media_id):
            raise self._fail(GraphAPIError("upload answer without id", status=response.status_code), what)
        return str(media_id)

    def mark_read(self, message_id: str, typing: bool = False) -> None:
        """Mark an inbound message read; ``typing`` also shows "typing…" until we reply (at most ~25 s)."""
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        if typing:
            body["typing_indicator"] = {"type": "text"}
        self._request("POST", self._messages_url(), f"mark_read {tag(message_id)}", json=body)

    def media_info(self, media_id: str) -> MediaInfo:
        """Look up a media id: the download URL (valid 5 minutes), its type, hash and size."""
        what = f"media_info {clean(media_id)}"  # the id came in a webhook
        response = self._request("GET", f"{self._base}/{quote(media_id, safe='')}", what)
        data = self._json(response, what)
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise self._fail(GraphAPIError("media answer without url", status=response.status_code), what)
        return MediaInfo(
            id=str(data.get("id") or media_id),
            url=url,
            mime_type=data.get("mime_type"),
            sha256=data.get("sha256"),
            file_size=_as_int(data.get("file_size")),
        )

    def download_media(self, url: str, max_bytes: int) -> bytes:
        """Download a media URL with the bearer token, refusing more than ``max_bytes``.

        Raises ``MediaTooLarge`` on a declared Content-Length over the cap, or as soon as the streamed body
        passes it, so at most ``max_bytes + DOWNLOAD_CHUNK`` bytes are ever held. An expired URL answers 404:
        look the media id up again.
        """
        what = "download_media"
        response = self._follow_media(url, what)
        with response:
            declared = _as_int(response.headers.get("Content-Length"))
            if declared is not None and declared > max_bytes:
                log.warning("%s: declared size %d bytes is over the limit of %d", what, declared, max_bytes)
                raise MediaTooLarge(declared, max_bytes)
            data = bytearray()
            try:
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        log.warning("%s: body passed the limit of %d bytes", what, max_bytes)
                        raise MediaTooLarge(len(data), max_bytes)
            except requests.RequestException as exc:
                raise self._fail(self._transport_error(exc), what) from exc
        return bytes(data)

    def phone_number(self) -> dict:
        """The business phone number's record (display number, verified name, quality) for diagnostics."""
        what = "phone_number"
        response = self._request("GET", f"{self._base}/{quote(self._phone_number_id, safe='')}", what)
        return self._json(response, what)

    def mount(self, prefix: str, adapter: BaseAdapter) -> None:
        """Route URLs under ``prefix`` through ``adapter`` (sandbox mode answers Graph calls in-process)."""
        self._session.mount(prefix, adapter)

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    # -- internals -------------------------------------------------------------------------------------

    def _messages_url(self) -> str:
        return f"{self._base}/{quote(self._phone_number_id, safe='')}/messages"

    def _follow_media(self, url: str, what: str) -> requests.Response:
        """GET a media URL one hop at a time, each hop checked (``media_hosts.refusal``) before it is requested; the
        token goes only to the first URL's host. Raises :class:`MediaRefused`, which is never retried."""
        graph = urlsplit(self._graph_url)
        first_host = None
        for hop in range(MAX_MEDIA_REDIRECTS + 1):
            why = refusal(url, self._media_hosts, plain_http_origin=f"{graph.scheme}://{graph.netloc}")
            why = why or _unrequestable(url)
            if why:
                raise self._fail(MediaRefused(f"media URL refused: {why}"), what)
            host = urlsplit(url).hostname  # only now: a URL that is no URL cannot be split
            first_host = host if hop == 0 else first_host
            headers = self._auth if host == first_host else {}
            try:
                response = self._request("GET", url, what, stream=True, headers=headers, allow_redirects=False)
            except ValueError:  # requests reads a redirect's Location even when it does not follow it
                raise self._fail(MediaRefused("media URL refused: a redirect to no valid URL"), what) from None
            if not response.is_redirect:
                return response
            response.close()
            url = urljoin(url, response.headers["Location"])
        raise self._fail(MediaRefused(f"media URL refused: more than {MAX_MEDIA_REDIRECTS} redirects"), what)

    def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json: dict | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        allow_redirects: bool = True,
        files: dict | None = None,
        data: dict | None = None,
    ) -> requests.Response:
        try:
            response = self._session.request(
                method,
                url,
                json=json,
                files=files,
                data=data,
                headers=self._auth if headers is None else headers,
                timeout=self._timeout,
                stream=stream,
                allow_redirects=allow_redirects,
                **self._environment(url),
            )
        except requests.RequestException as exc:
            raise self._fail(self._transport_error(exc), what) from exc
        if response.status_code >= 400:
            raise self._fail(self._error_from_response(response), what)
        return response

    def _environment(self, url: str) -> dict[str, Any]:
        """The proxies (``HTTPS_PROXY``, ``NO_PROXY``...) and CA bundle (``REQUESTS_CA_BUNDLE``) for ``url``."""
        origin = urlsplit(url)[:2]
        found = self._environments.get(origin)
        if found is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            found = {"proxies": requests.utils.get_environ_proxies(url), "verify": verify}
            self._environments[origin] = found
        return found

    def _json(self, response: requests.Response, what: str) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._fail(
                GraphAPIError("answer is not a JSON object", status=response.status_code, response=response),
                what,
            )
        return data

    def _transport_error(self, exc: requests.RequestException) -> GraphAPIError:
        return GraphAPIError(self._redact(f"{type(exc).__name__}: {exc}"))

    def _error_from_response(self, response: requests.Response) -> GraphAPIError:
        try:
            data = response.json()
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return GraphAPIError(
                f"{response.status_code} {response.reason or ''}".strip(),
                status=response.status_code,
                response=response,
            )
        error_data = error.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else error_data
        trace = error.get("fbtrace_id")
        return GraphAPIError(
            self._redact(str(error.get("message") or "")),
            status=response.status_code,
            code=_as_int(error.get("code")),
            subcode=_as_int(error.get("error_subcode")),
            fbtrace_id=str(trace) if trace else None,
            details=self._redact(str(details)) if details else None,
            response=response,
        )

    def _fail(self, error: GraphAPIError, what: str) -> GraphAPIError:
        """Log a failure once, at a level that says who must act, and hand it back to be raised."""
        extra = f" ({error.details})" if error.details else ""
        if error.auth_failed:
            log.error("%s: %s%s -- the access token is invalid or expired and must be replaced", what, error, extra)
        elif error.retryable:
            log.warning("%s: %s%s (retryable)", what, error, extra)
        else:
            log.error("%s: %s%s (not retryable)", what, error, extra)
        return error

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[redacted]")


def addressed(customer: str) -> dict[str, str]:
    """The addressing fields of a send: ``{"to": wa_id}`` for a phone number, ``{"recipient": bsuid}`` for a customer
    known only by a business-scoped user id (``US.13491208655302741918``), as Graph wants for username users."""
    if customer.isascii() and customer.isdigit():
        return {"to": customer}
    return {"recipient": customer}


def _unrequestable(url: str) -> str | None:
    """Why ``requests`` cannot even build a request for ``url`` (a host label IDNA refuses...), which no later attempt
    changes; None when it can. Its own message quotes the whole URL, so only the kind of failure is kept."""
    try:
        requests.PreparedRequest().prepare_url(url, None)
    except requests.RequestException as error:
        return f"not a valid URL ({type(error).__name__})"
    return None


def _as_int(value: object) -> int | None:
    """Meta sends some numbers as strings (``file_size``, codes); accept both, ignore anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
