"""The CLI's client of glusterpyd's REST API (standard library http.client).

`ApiClient(remote, token)` talks to `HOST[:PORT]` (default 127.0.0.1:24007,
or $GLUSTERPY_REMOTE_HOST), or `unix:PATH`; every call returns the decoded
JSON body or raises ApiFailure with the daemon's message.

How it reaches the daemon (glusterpy/localsock.py, glusterd/trust.py):

* HOST names this machine and the daemon on PORT registered its unix
  socket: over that socket, where the kernel vouches for our uid and root
  needs nothing else - so every command run on a node works as before;
* otherwise over TCP with TLS, sending the token ($GLUSTERPY_TOKEN or
  `--token`) as `Authorization: Bearer`, and only after checking the
  daemon's certificate against the pin the token carries (the token's
  third part): a token is never handed to an impostor.  Without a token
  the daemon answers 401 with how to get one.
"""

from __future__ import annotations

import getpass
import hashlib
import http.client
import json
import os
import socket
import ssl
from urllib.parse import quote

from .. import localsock

DEFAULT_PORT = 24007
TIMEOUT = 300.0


class ApiFailure(Exception):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def parse_remote(text: str | None) -> tuple[str, int]:
    text = text or os.environ.get("GLUSTERPY_REMOTE_HOST") or "127.0.0.1"
    if text.startswith("unix:"):
        if not text[5:]:
            raise ApiFailure("--remote-host unix:PATH needs the socket's path")
        return text, 0
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not host or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        raise ApiFailure(f"--remote-host {text!r}: expected HOST[:PORT] or unix:PATH")
    return host, int(port) if port else DEFAULT_PORT


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the daemon's unix socket; the daemon at the other end must
    be root or ourselves (SO_PEERCRED), never a stranger's socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            _, uid, _ = localsock.peer_credentials(sock)
        except OSError:
            sock.close()
            raise
        if not localsock.trusted_uid(uid):
            sock.close()
            raise ApiFailure(f"{self.path} is served by uid {uid}, not by root: refusing to "
                             "talk to it")
        self.sock = sock


class _NodeTlsConnection(http.client.HTTPSConnection):
    """HTTPS to a glusterpyd, asking for its node certificate (NODE_SNI):
    the one a token's pin names, whatever certificate the port shows
    GlusterFS's clients.  Not verified by a CA: `_check_pin` compares it."""

    def __init__(self, host: str, port: int, timeout: float):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=ctx)
        self._ctx = ctx

    def connect(self):
        # here, not at the top: trust brings the cryptography package
        # (~0.15 s), which a command over the local socket does not need
        from ..glusterd.trust import NODE_SNI
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._ctx.wrap_socket(sock, server_hostname=NODE_SNI)
        except BaseException:
            sock.close()
            raise


class ApiClient:
    def __init__(self, remote: str | None = None, timeout: float = TIMEOUT,
                 token: str | None = None):
        self.host, self.port = parse_remote(remote)
        self.timeout = timeout
        self.token = token or os.environ.get("GLUSTERPY_TOKEN") or None
        self._unix: str | None = None
        if self.host.startswith("unix:"):
            self._unix = self.host[5:]
        elif localsock.is_local_address(self.host):
            link = localsock.registry_path(self.port)
            # (a user who may not use the socket - anyone but root - goes
            # the network way, where a token is needed)
            if os.access(link, os.R_OK | os.W_OK):
                self._unix = str(link)

    @property
    def where(self) -> str:
        return self.host if self._unix and self.host.startswith("unix:") else \
            f"{self.host}:{self.port}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self.timeout)
        return _NodeTlsConnection(self.host, self.port, self.timeout)

    def _check_pin(self, conn: http.client.HTTPConnection) -> None:
        """The daemon's certificate must match the pin in the token (its
        third part) before the token leaves this process."""
        if not self.token or self._unix is not None:
            return
        parts = self.token.strip().split(".")
        if len(parts) != 3:
            return  # a token without a pin: sent as the user gave it
        der = conn.sock.getpeercert(binary_form=True)
        seen = hashlib.sha256(der).hexdigest()
        if not seen.startswith(parts[2].lower()):
            raise ApiFailure(f"{self.where} presented a certificate (sha256 {seen[:32]}) that "
                             f"is not the one this token was made for ({parts[2]}): not "
                             "sending the token")

    def call(self, method: str, path: str, body=None, **query):
        params = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items()
                          if v is not None)
        target = path + (f"?{params}" if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
        headers = {"X-Glusterpy-User": user, "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            try:
                conn.connect()
            except OSError:
                if self._unix is None or self.host.startswith("unix:"):
                    raise
                # a registry link a dead daemon left: go the network way
                self._unix = None
                conn = self._connection()
                conn.connect()
            self._check_pin(conn)
            if self.token and self._unix is None:
                headers["Authorization"] = f"Bearer {self.token.strip()}"
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ApiFailure(f"Connection failed. Please check if gluster daemon is "
                             f"operational. ({self.where}: {reason})") from None
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            raise ApiFailure(f"{self.where} answered something that is not "
                             "JSON: is it a glusterpyd?", resp.status) from None
        if resp.status >= 400:
            raise ApiFailure(doc.get("error", f"HTTP {resp.status}") if isinstance(doc, dict)
                             else f"HTTP {resp.status}", resp.status)
        return doc


def quote_path(segment: str) -> str:
    return quote(segment, safe="")


__all__ = ["ApiClient", "ApiFailure", "parse_remote", "quote_path"]
