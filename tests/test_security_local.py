"""Issue 14 on one node: the unix socket, the token lifecycle, `tls setup`.

* root on the node needs nothing (the CLI finds the daemon's socket from
  HOST:PORT); another local user gets no admin rights from the socket - the
  kernel says who connects - and over TCP needs a token like anyone else;
* tokens: made once and shown once, stored hashed, listed without secrets,
  read-only vs admin, revoked with effect on the next request, managed
  only on the node; bad names and roles refused with nothing changed;
* `tls setup` writes GlusterFS's three files on every node of a pool and
  rewrites the CA list when the pool changes; `--management on` makes the
  port refuse plain text, while TLS RPC (GETSPEC) and HTTPS keep working.

"Remote" here is this machine reached over TCP with the CLI's socket
registry pointed elsewhere (GLUSTERPY_RUN_DIR), which is exactly what a
CLI on another host sees; tests/test_security_attacks.py does it from
another network namespace.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys

import pytest

from glusterpy import pki
from test_glusterd_support import Daemon, running_daemon, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon's socket is root's")


def remote_cli(d: Daemon, *args: str, token: str | None = None, tmp=None):
    """The CLI as from another host: no registry to find the socket in."""
    env = {**os.environ, "GLUSTERPY_RUN_DIR": str(tmp or "/nonexistent")}
    env.pop("GLUSTERPY_TOKEN", None)
    if token:
        env["GLUSTERPY_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "--remote-host",
                           d.remote, *args], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def node(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        yield d


def test_root_on_the_node_needs_nothing(node):
    d = node
    assert oct(d.socket.stat().st_mode & 0o777) == "0o600"
    assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"
    # the same command from "elsewhere" is refused with how to get in
    r = remote_cli(d, "volume", "list")
    assert r.returncode == 1 and "authentication required" in r.stderr
    assert "glusterpy token create" in r.stderr


def test_another_local_user_is_not_root(node, tmp_path):
    d = node
    nobody = pwd.getpwnam("nobody")
    # the kernel refuses the socket to anyone but root (mode 0600)
    code = (f"import socket; s = socket.socket(socket.AF_UNIX); "
            f"s.connect({str(d.socket)!r})")
    r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
    # and the CLI run by that user goes the network way, where it needs a token
    env = {"PATH": os.environ["PATH"], "HOME": "/", "PYTHONPATH": os.getcwd()}
    r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups", sys.executable, "-m", "glusterpy.cli.main",
                        "--remote-host", d.remote, "volume", "create", "x",
                        f"127.0.0.1:{tmp_path / 'b'}"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "authentication required" in r.stderr, r.stderr + r.stdout


def test_token_lifecycle(node, tmp_path):
    d = node
    (tmp_path / "b1").mkdir()
    before = snapshot(d.workdir)
    for args, message in [(("create", "bad name"), "use 1-64 letters"),
                          (("create", "a.b"), "use 1-64 letters"),
                          (("revoke", "nosuch"), "no token named nosuch")]:
        r = d.cli("token", *args)
        assert r.rc == 1 and message in r.err, r.text
    r = d.cli("token", "create", "x", "--role", "god")
    assert r.rc == 2 and "invalid choice" in r.err
    status, doc = d.api("POST", "/api/v1/tokens", json.dumps(
        {"name": "x", "role": "god"}).encode())
    assert status == 400 and "role" in doc["error"]
    assert snapshot(d.workdir) == before

    admin = d.ok("token", "create", "ops", "--role", "admin").out.splitlines()[1]
    reader = d.ok("token", "create", "watcher").out.splitlines()[1]   # read-only by default
    assert d.cli("token", "create", "ops").rc == 1                    # names are unique
    listing = d.ok("token", "list").out
    assert "ops" in listing and "admin" in listing and "watcher" in listing
    assert "read-only" in listing
    # shown once: the node keeps hashes only
    stored = (d.workdir / "trust" / "tokens.json").read_text()
    for token in (admin, reader):
        assert token.split(".")[1] not in stored and token.split(".")[1] not in listing
    assert oct((d.workdir / "trust" / "tokens.json").stat().st_mode & 0o777) == "0o600"

    # admin: anything; read-only: reads only
    r = remote_cli(d, "volume", "create", "v", f"127.0.0.1:{tmp_path / 'b1'}", token=admin)
    assert r.returncode == 0, r.stderr
    r = remote_cli(d, "volume", "info", "v", token=reader)
    assert r.returncode == 0 and "Volume Name: v" in r.stdout
    before = snapshot(d.workdir)
    for args in (("volume", "start", "v"), ("volume", "delete", "v"),
                 ("volume", "set", "v", "performance.cache-size", "64MB"),
                 ("peer", "probe", "127.0.0.1:1")):
        r = remote_cli(d, "--mode=script", *args, token=reader)
        assert r.returncode == 1 and "read-only token may not change state" in r.stderr, \
            (args, r.stderr)
    # tokens are not managed from afar, not even with an admin token
    r = remote_cli(d, "token", "create", "more", "--role", "admin", token=admin)
    assert r.returncode == 1 and "managed on the node itself" in r.stderr
    assert snapshot(d.workdir) == before
    # the REST API says why, with the status the issue names
    headers = {"Authorization": f"Bearer {reader}", "Content-Type": "application/json"}
    status, doc = d.api_tcp("DELETE", "/api/v1/volumes/v", headers=headers)
    assert status == 403 and "error" in doc
    status, doc = d.api_tcp("DELETE", "/api/v1/volumes/v")
    assert status == 401 and "error" in doc

    # revoked: refused at the next request, the other token unaffected
    d.ok("token", "revoke", "ops")
    r = remote_cli(d, "volume", "delete", "v", "--yes", token=admin)
    assert r.returncode == 1 and "not valid on this node" in r.stderr
    assert remote_cli(d, "volume", "list", token=reader).returncode == 0
    assert "ops" not in d.ok("token", "list").out

    # a token is never sent to a daemon whose certificate is not the one it names
    name, secret, pin = reader.split(".")
    r = remote_cli(d, "volume", "list", token=f"{name}.{secret}.{'0' * len(pin)}")
    assert r.returncode == 1 and "not sending the token" in r.stderr
    # and the audit log says who was refused, and why
    entries = [json.loads(line) for line in (d.workdir / "audit.log").read_text().splitlines()]
    refused = [e for e in entries if e["result"].startswith("refused")]
    assert any(e["who"].get("token") == "watcher" and e["op"].startswith("POST")
               for e in refused)
    assert any(e["who"].get("kind") == "bad-token" for e in refused)


def _tls_files(ssl_dir):
    return {n: (ssl_dir / n).read_text() for n in ("glusterfs.pem", "glusterfs.key",
                                                   "glusterfs.ca")}


def test_tls_setup_follows_the_pool(tmp_path, monkeypatch):
    ssl_dirs = [tmp_path / f"ssl{i}" for i in (1, 2)]
    nodes = []
    try:
        for i, ssl_dir in enumerate(ssl_dirs, 1):
            # each node its own /etc/ssl, as on two machines
            monkeypatch.setenv("GLUSTERPY_SSL_CERT_DIR", str(ssl_dir))
            nodes.append(Daemon(tmp_path / f"wd{i}").start())
        n1, n2 = nodes
        monkeypatch.delenv("GLUSTERPY_SSL_CERT_DIR")
        r = n1.ok("tls", "setup")
        assert r.out.count("management TLS off") == 1
        files = _tls_files(ssl_dirs[0])
        assert files["glusterfs.pem"] == (n1.workdir / "trust" / "node.pem").read_text()
        assert oct((ssl_dirs[0] / "glusterfs.key").stat().st_mode & 0o777) == "0o600"
        assert len(pki.load_certs(files["glusterfs.ca"].encode())) == 1
        # a probe puts the new member in every node's CA list, and its own files
        n1.ok("peer", "probe", f"127.0.0.1:{n2.port}")
        for i, ssl_dir in enumerate(ssl_dirs):
            files = _tls_files(ssl_dir)
            assert files["glusterfs.pem"] == (nodes[i].workdir / "trust" / "node.pem").read_text()
            assert len(pki.load_certs(files["glusterfs.ca"].encode())) == 2
        # a client's files: its certificate trusted on every node
        out = tmp_path / "laptop"
        n2.ok("tls", "client", "laptop", "--out", str(out))
        cert = pki.load_certs((out / "glusterfs.pem").read_bytes())[0]
        assert pki.common_name(cert) == "laptop"
        for ssl_dir in ssl_dirs:
            assert (out / "glusterfs.pem").read_text() in _tls_files(ssl_dir)["glusterfs.ca"]
        assert n2.cli("tls", "client", "laptop", "--out", str(out)).rc == 1  # no overwrite
        # management TLS: plain text refused on the port, TLS served
        n1.ok("tls", "setup", "--management", "on")
        assert (n1.workdir / "secure-access").exists() and (n2.workdir / "secure-access").exists()
        status, doc = n1.api_tcp("GET", "/api/v1/openapi.json", tls=False)
        assert status == 403 and "management TLS is on" in doc["error"]
        assert n1.api_tcp("GET", "/api/v1/openapi.json")[0] == 200
        assert "Connected" in n1.ok("peer", "status").out      # peers speak TLS anyway
        # a detach drops the member from the lists
        n1.ok("--mode=script", "peer", "detach", "127.0.0.1")
        assert len(pki.load_certs(_tls_files(ssl_dirs[0])["glusterfs.ca"].encode())) == 2
        assert (n2.workdir / "trust" / "node.pem").read_text() not in \
            _tls_files(ssl_dirs[0])["glusterfs.ca"]
        n1.ok("tls", "setup", "--management", "off")
        assert not (n1.workdir / "secure-access").exists()
        assert n1.api_tcp("GET", "/api/v1/openapi.json", tls=False)[0] == 200
    finally:
        for d in nodes:
            d.cleanup()
