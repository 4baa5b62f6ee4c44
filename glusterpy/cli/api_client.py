"""The CLI's client of glusterpyd's REST API (standard library http.client).

`ApiClient(remote)` talks to `HOST[:PORT]` (default 127.0.0.1:24007, or
$GLUSTERPY_REMOTE_HOST); every call returns the decoded JSON body or raises
ApiFailure with the daemon's message.  The caller names itself with
X-Glusterpy-User and X-Glusterpy-Uid (the daemon also asks the kernel who
owns a loopback connection and records both in its audit log).
"""

from __future__ import annotations

import getpass
import http.client
import json
import os
from urllib.parse import quote

DEFAULT_PORT = 24007
TIMEOUT = 300.0


class ApiFailure(Exception):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def parse_remote(text: str | None) -> tuple[str, int]:
    text = text or os.environ.get("GLUSTERPY_REMOTE_HOST") or "127.0.0.1"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ApiFailure(f"--remote-host {text!r}: expected HOST[:PORT]")
    return host, int(port) if port else DEFAULT_PORT


class ApiClient:
    def __init__(self, remote: str | None = None, timeout: float = TIMEOUT):
        self.host, self.port = parse_remote(remote)
        self.timeout = timeout

    def call(self, method: str, path: str, body=None, **query):
        params = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items()
                          if v is not None)
        target = path + (f"?{params}" if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
        headers = {"X-Glusterpy-User": user, "X-Glusterpy-Uid": str(os.getuid()),
                   "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ApiFailure(f"Connection failed. Please check if gluster daemon is "
                             f"operational. ({self.host}:{self.port}: {reason})") from None
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            raise ApiFailure(f"{self.host}:{self.port} answered something that is not "
                             "JSON: is it a glusterpyd?", resp.status) from None
        if resp.status >= 400:
            raise ApiFailure(doc.get("error", f"HTTP {resp.status}") if isinstance(doc, dict)
                             else f"HTTP {resp.status}", resp.status)
        return doc


def quote_path(segment: str) -> str:
    return quote(segment, safe="")


__all__ = ["ApiClient", "ApiFailure", "parse_remote", "quote_path"]
