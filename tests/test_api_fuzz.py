"""The REST API fuzzed (issue 14): random methods, paths, bodies and headers.

Against one glusterpyd with a volume, hypothesis sends requests

* over TCP - plain and TLS - anonymous, with a forged token, with a
  read-only token: every answer is JSON with a 4xx status (never a 5xx),
  and the daemon's state is byte-identical after each one;
* over the unix socket as root, with junk bodies on every route: no 5xx,
  whatever the route makes of it;
* and raw bytes at the port (HTTP-ish, TLS-ish, RPC-ish): the daemon
  still answers afterwards.

The daemon's log must hold no traceback at the end: an unhandled
exception is a 500 that happened to be caught.  The fuzz reaches `tls
setup` and `tls client` as root, so the daemon gets an OpenSSL directory of
its own: this machine's (/usr/lib/ssl/glusterfs.*) must be as it was.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glusterpy.glusterd.routes import ROUTES
from test_glusterd_support import Daemon, raw_http, snapshot

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW"]
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _host_tls_files() -> dict:
    from glusterpy.rpc import tls
    out = {}
    for path in (tls.SECURE_ACCESS_FILE, *(f"{tls.DEFAULT_CERT_DIR}/glusterfs.{x}"
                                          for x in ("pem", "key", "ca"))):
        try:
            with open(path, "rb") as f:
                out[path] = f.read()
        except FileNotFoundError:
            out[path] = None
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    host_tls = _host_tls_files()
    # (`tls setup` fuzzed as root would otherwise write this machine's files)
    d = Daemon(base / "wd", env={"GLUSTERPY_SSL_CERT_DIR": str(base / "ssl")})
    try:
        d.start()
        (base / "b1").mkdir()
        d.ok("volume", "create", "v", f"127.0.0.1:{base / 'b1'}", "force")
        d.read_only = d.ok("token", "create", "ro", "--role", "read-only").out.splitlines()[1]
        # what the fuzz may do at random, once for sure: into the daemon's own directory
        assert d.api("POST", "/api/v1/tls/setup", b"{}")[0] == 200
        assert (base / "ssl" / "glusterfs.pem").exists()
        yield d
        log = d.log.read_text()
        assert "Traceback" not in log, log[log.index("Traceback"):][:3000]
    finally:
        d.cleanup()
    assert _host_tls_files() == host_tls, "the fuzzed daemon changed this machine's TLS files"


segment = st.one_of(st.sampled_from(["v", "nosuch", "..", ".", "%2e%2e", "%00", "all", "a" * 300,
                                     "ro", "x:y", "%ZZ"]),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                   blacklist_characters="/?#"),
                            min_size=1, max_size=20).map(lambda s: re.sub(r"\s", "_", s)))


@st.composite
def paths(draw) -> str:
    route = draw(st.sampled_from(ROUTES))
    path = re.sub(r"\{\w+\}", lambda _: draw(segment), route.pattern)
    if draw(st.booleans()):
        path += "?" + "&".join(f"{draw(segment)}={draw(segment)}"
                               for _ in range(draw(st.integers(1, 3))))
    return draw(st.one_of(st.just(path), st.just("/api/v1/" + draw(segment)),
                          st.just("/ui/" + draw(segment)), st.just("/ui/vendor/" + draw(segment)),
                          st.just("//" + path), st.just(path + "/")))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) |
    st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
known_keys = st.sampled_from(["name", "bricks", "replica", "force", "options", "action",
                              "host", "port", "op", "policy", "file", "brick", "role",
                              "management", "txn", "plan", "nodes", "volumes", "peer",
                              "clients", "stripe", "arbiter", "device", "transport"])
bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(known_keys, json_values, max_size=5).map(lambda v: json.dumps(v).encode()))
header_names = st.sampled_from(["Authorization", "X-Glusterpy-Node", "X-Glusterpy-User",
                                "Content-Type", "Transfer-Encoding", "Content-Length",
                                "X-Forwarded-For", "Host"])
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                        max_size=60)


def _console(path: str) -> bool:
    # as glusterpyd splits the target (glusterd/http.py)
    p = urlsplit(path).path
    return p in ("/", "/ui") or p.startswith("/ui/")


def server_error(status: int, doc) -> bool:
    """A 5xx other than 501, h11's right answer to a Transfer-Encoding it
    does not implement."""
    return status >= 500 and status != 501


def _request(d, method, path, body, headers, *, unix=False, tls=True):
    try:
        if unix:
            return raw_http(method, path, body, headers, unix=str(d.socket))
        return raw_http(method, path, body, headers, host=d.address, port=d.port, tls=tls)
    except (ValueError, OSError, http.client.InvalidURL) as e:
        # a request http.client itself refuses to send, or a connection the
        # daemon closed on garbage
        return None, str(e)
    except json.JSONDecodeError:
        pytest.fail(f"{method} {path}: the answer is not JSON")


@FUZZ
@given(method=st.sampled_from(METHODS), path=paths(), body=bodies,
       headers=st.dictionaries(header_names, header_values, max_size=3),
       who=st.sampled_from(["anonymous", "forged", "read-only"]), tls=st.booleans())
def test_unauthorised_requests_change_nothing(node, method, path, body, headers, who, tls):
    if who == "forged":
        headers = dict(headers, Authorization="Bearer ro.forgedsecret")
    elif who == "read-only":
        headers = dict(headers, Authorization=f"Bearer {node.read_only}")
    before = snapshot(node.workdir)
    status, doc = _request(node, method, path, body, headers, tls=tls)
    if status is None:
        return
    assert not server_error(status, doc), (method, path, body, headers, status, doc)
    if who == "read-only" and status < 400:
        assert method in ("GET", "HEAD"), (method, path, status)
    elif who != "read-only" and status < 400:
        # only the API's description and the console's files are public
        assert method == "GET" and ("openapi" in doc or _console(path)), \
            (method, path, status, doc)
    assert snapshot(node.workdir) == before, (method, path, body, headers)


@FUZZ
@given(route=st.sampled_from([r for r in ROUTES if r.method != "GET"]), body=bodies,
       name=segment)
def test_junk_from_root_is_never_a_server_error(node, route, body, name):
    # (a function, not a template: a name like "\\1" is data, not a back-reference)
    path = re.sub(r"\{\w+\}", lambda _: name, route.pattern)
    status, doc = _request(node, route.method, path, body, {}, unix=True)
    if status is not None:
        assert not server_error(status, doc), (route.method, path, body, status, doc)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.sampled_from([b"", b"\x16\x03\x01", b"\x80\x00\x00", b"GET ", b"\x00"]),
       junk=st.binary(max_size=300))
def test_raw_bytes_at_the_port(node, first, junk):
    with socket.create_connection((node.address, node.port), timeout=10) as s:
        try:
            s.sendall(first + junk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
    status, _ = raw_http("GET", "/api/v1/openapi.json", host=node.address, port=node.port,
                         tls=True)
    assert status == 200


@pytest.mark.parametrize("name", ["..", "a..b", "x" * 64 + ".example", "."])
def test_peer_names_that_are_no_host_names_are_refused(node, name):
    """Found by the fuzzer: a peer name the resolver cannot even encode
    (an empty or 64-byte label) raised UnicodeError as a 500."""
    for method in ("DELETE", "POST"):
        path = f"/api/v1/peers/{name}" if method == "DELETE" else "/api/v1/peers"
        body = None if method == "DELETE" else json.dumps({"host": name}).encode()
        status, doc = _request(node, method, path, body, {}, unix=True)
        assert status is not None and 400 <= status < 500, (method, name, status, doc)
