"""HTTP/1.1 for glusterpyd's REST API, over trio, with h11 as the protocol core.

h11 is sans-IO: bytes in, events out; events in, bytes out.  This module
only moves bytes between a trio stream and an h11.Connection, so the
daemon's HTTP is exactly as correct as h11 (request framing, keep-alive,
chunked bodies, malformed input becoming one protocol error).

`serve_http(stream, app)` serves one connection: every request is read
whole (at most MAX_BODY bytes of body: 413 beyond), handed to
`app(request) -> Response`, and answered; keep-alive is honoured.  A
request h11 cannot parse gets a 400 with a JSON body and the connection is
closed.  `request()` is the matching client that peers use to call each
other's API (the CLI uses the standard library's http.client instead).

JSON is the only body type: requests with a body must be
`application/json` objects; replies are `application/json`, errors
`{"error": MESSAGE}` with a 4xx/5xx status.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import h11
import trio

log = logging.getLogger("glusterpy.glusterd.http")

MAX_BODY = 1 << 20
READ_SIZE = 65536
#: idle keep-alive connections are closed after this many seconds
IDLE_TIMEOUT = 300.0
SERVER = "glusterpyd"


class ApiError(Exception):
    """An error answer: HTTP status and a message for people."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None
    params: dict[str, str] = field(default_factory=dict)
    #: what the connection proved, not what the request claims: "transport"
    #: (unix, tls or tcp), "uid" (unix: SO_PEERCRED), "cert" (tls: the
    #: fingerprint of the client's certificate) - see glusterd/trust.py
    conn: dict = field(default_factory=dict)

    def json(self) -> dict:
        """The body as a JSON object ({} when empty); ApiError 400 if not."""
        if not self.body:
            return {}
        try:
            doc = json.loads(self.body)
        except ValueError as e:
            raise ApiError(400, f"the request body is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return doc

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able
    #: a body that is not JSON (the web console's static files: glusterd/routes/console.py)
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return (json.dumps(self.body, indent=1) + "\n").encode() if self.body is not None \
            else b""


App = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str, **extra) -> Response:
    return Response(status, {"error": message, **extra})


async def _send(stream: trio.abc.Stream, conn: h11.Connection, event) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _respond(stream, conn: h11.Connection, resp: Response, keep: bool = True) -> None:
    body = resp.encode()
    headers = [("content-type", resp.content_type), ("content-length", str(len(body))),
               ("server", SERVER), *resp.headers.items()]
    if resp.status == 401:
        headers.append(("www-authenticate", 'Bearer realm="glusterpyd"'))
    if not keep:
        headers.append(("connection", "close"))
    await _send(stream, conn, h11.Response(status_code=resp.status, headers=headers,
                                           reason=_REASONS.get(resp.status, b"")))
    await _send(stream, conn, h11.Data(data=body))
    await _send(stream, conn, h11.EndOfMessage())


_REASONS = {200: b"OK", 201: b"Created", 301: b"Moved Permanently", 304: b"Not Modified", 400: b"Bad Request", 401: b"Unauthorized",
            403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 409: b"Conflict", 413: b"Payload Too Large",
            500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable"}


async def _next_event(stream, conn: h11.Connection):
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(IDLE_TIMEOUT):
            data = await stream.receive_some(READ_SIZE)
        conn.receive_data(data)


async def serve_http(stream: trio.abc.Stream, app: App, peer=None, prefix: bytes = b"",
                     conn_facts: dict | None = None) -> None:
    """Serve HTTP requests on `stream` (whose first bytes, already read,
    are `prefix`) until the client closes or an error ends it; every
    request carries `conn_facts` as `Request.conn`."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    if prefix:
        conn.receive_data(prefix)
    try:
        while True:
            try:
                event = await _next_event(stream, conn)
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return
                body = bytearray()
                too_big = False
                while True:
                    part = await _next_event(stream, conn)
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > MAX_BODY:
                            too_big = True
                            break
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
            except h11.RemoteProtocolError as e:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _respond(stream, conn, error_response(
                        e.error_status_hint, f"malformed HTTP request: {e}"), keep=False)
                return
            if too_big:
                await _respond(stream, conn, error_response(
                    413, f"the request body is larger than {MAX_BODY} bytes"), keep=False)
                return
            url = urlsplit(event.target.decode("latin-1"))
            req = Request(method=event.method.decode("latin-1"), path=url.path,
                          query=parse_qs(url.query), body=bytes(body), peer=peer,
                          conn=dict(conn_facts or {}),
                          headers={k.decode("latin-1").lower(): v.decode("latin-1")
                                   for k, v in event.headers})
            try:
                resp = await app(req)
            except ApiError as e:
                resp = error_response(e.status, e.message, **e.extra)
            except Exception as e:
                log.exception("%s %s failed", req.method, req.path)
                resp = error_response(500, f"internal error: {type(e).__name__}: {e}")
            await _respond(stream, conn, resp)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
            h11.LocalProtocolError):
        return
    finally:
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except Exception:
                pass


class PeerUnreachable(Exception):
    """The peer did not answer (connection refused, timed out, cut), or
    answered with a certificate other than the one pinned for it."""


@dataclass
class Reply:
    status: int
    doc: Any
    #: the fingerprint of the server's certificate (TLS only)
    fingerprint: str | None = None


async def request(host: str, port: int, method: str, path: str, body: Any = None, *,
                  timeout: float = 30.0, headers: dict[str, str] | None = None,
                  tls: ssl.SSLContext | None = None, pin: str | None = None) -> Reply:
    """One HTTP request to a peer's API.  With `tls`, over TLS; with `pin`
    too, the server's certificate must have that fingerprint, or begin
    with it (a token's pin: 32 hex digits at least), checked before the
    request is sent.  PeerUnreachable when no answer came
    within `timeout` or the certificate is not the pinned one."""
    from .. import pki
    from .trust import NODE_SNI
    payload = json.dumps(body).encode() if body is not None else b""
    hdrs = [("host", f"{host}:{port}"), ("user-agent", SERVER),
            ("content-length", str(len(payload))), ("connection", "close")]
    if payload:
        hdrs.append(("content-type", "application/json"))
    for k, v in (headers or {}).items():
        hdrs.append((k, v))
    conn = h11.Connection(h11.CLIENT)
    seen = None
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            try:
                if tls is not None:
                    stream = trio.SSLStream(stream, tls, server_hostname=NODE_SNI)
                    await stream.do_handshake()
                    seen = pki.fingerprint(stream.getpeercert(binary_form=True))
                    if pin is not None and (len(pin) < 32 or not seen.startswith(pin)):
                        raise PeerUnreachable(
                            f"{host}:{port}: its certificate (sha256 {seen[:16]}...) is not "
                            f"the one pinned for it (by this pool, or by the token used: "
                            f"sha256 {pin[:16]}...)")
                await _send(stream, conn, h11.Request(method=method, target=path,
                                                      headers=hdrs))
                await _send(stream, conn, h11.Data(data=payload))
                await _send(stream, conn, h11.EndOfMessage())
                status = None
                data = bytearray()
                while True:
                    event = await _next_event(stream, conn)
                    if isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        data += event.data
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await stream.aclose()
                    except (trio.BrokenResourceError, OSError):
                        pass
    except UnicodeError:
        # the resolver cannot even encode it: "..", an empty or 64-byte label
        raise PeerUnreachable(f"{host!r} is not a host name") from None
    except (OSError, trio.TooSlowError, trio.BrokenResourceError, h11.ProtocolError) as e:
        reason = "timed out" if isinstance(e, trio.TooSlowError) else \
            (getattr(e, "strerror", None) or str(e) or type(e).__name__)
        raise PeerUnreachable(f"{host}:{port}: {reason}") from None
    if status is None:
        raise PeerUnreachable(f"{host}:{port}: no answer")
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        doc = {"error": data.decode(errors="replace")}
    return Reply(status, doc, seen)


__all__ = ["ApiError", "Request", "Response", "serve_http", "request", "Reply", "PeerUnreachable",
           "error_response"]
