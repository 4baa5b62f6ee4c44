"""Issue 14 replayed by an attacker: from another network namespace, against
a two-node pool, nothing gets in and nothing changes.

The pool: glusterpyd on node 1 and node 2 (each in its namespace, probed
together).  The attacker sits in a third namespace on the same switch, with
glusterpy installed and a glusterpyd of its own (a node of another pool,
with its own certificate).  In order:

1. anonymous: the issue's own commands - `volume create x NODE:/etc force`
   and `volume start x` with --remote-host - and the same as raw HTTP and
   HTTPS;
2. with a read-only token the node's admin made: reading works, every
   change is a 403;
3. as a non-member peer: stage/commit/join/lock/peers called directly,
   with the attacker node's certificate, with none, with a member's uuid
   in the header, over plain HTTP; and the attacker's daemon probing
   node 1 into its pool;
4. a member detached: its certificate, still on its disk, opens nothing.

After each step every node's state is byte-identical (snapshot) and the
refusals are in node 1's audit log with the attacker's address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from test_glusterd_cluster import SUBNET, switched_namespaces
from test_glusterd_support import Daemon, snapshot

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

PORT = 24418

#: a client that knows nothing of glusterpy: (status, body) or ("refused", why)
ATTACK_CLIENT = textwrap.dedent("""
    import http.client, json, ssl, sys
    def call(host, port, method, path, body=None, headers=None, tls=True, cert=None, key=None):
        try:
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if cert:
                    ctx.load_cert_chain(cert, key)
                c = http.client.HTTPSConnection(host, port, context=ctx, timeout=20)
            else:
                c = http.client.HTTPConnection(host, port, timeout=20)
            data = json.dumps(body).encode() if body is not None else None
            c.request(method, path, body=data, headers=dict(headers or {},
                      **({"Content-Type": "application/json"} if data else {})))
            r = c.getresponse()
            return [r.status, json.loads(r.read() or b"{}")]
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            return ["refused", f"{type(e).__name__}: {e}"]
""")


def run_in(ns: str, code: str) -> object:
    """Run python `code` (which prints one JSON document) inside `ns`."""
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           ATTACK_CLIENT + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_in(ns: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "glusterpy.cli.main",
                           *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def pool(tmp_path):
    """Two peered nodes and an attacker's namespace with its own glusterpyd."""
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}", netns=ns)
                 for i, ns in enumerate(namespaces, 1)]
        try:
            for d in nodes:
                d.start()
            nodes[0].ok("peer", "probe", f"{SUBNET}.2:{PORT}")
            yield nodes
        finally:
            for d in nodes:
                d.cleanup()


def states(nodes) -> list[dict]:
    return [snapshot(d.workdir) for d in nodes]


def refused_in_audit(d: Daemon, address: str) -> list[dict]:
    entries = [json.loads(line) for line in (d.workdir / "audit.log").read_text().splitlines()]
    return [e for e in entries if (e.get("who") or {}).get("address") == address
            and (e["result"].startswith("refused") or e["result"].startswith("failed"))]


def test_an_attacker_gets_nothing(pool, tmp_path):
    n1, n2, attacker = pool
    members = [n1, n2]
    host1 = f"{SUBNET}.1"
    evil = f"{SUBNET}.3"
    before = states(members)
    etc_before = sorted(os.listdir("/etc"))

    # 1. anonymous, with the issue's own commands
    remote = f"{host1}:{PORT}"
    r = cli_in(attacker.netns, "--remote-host", remote, "volume", "create", "x",
               f"{host1}:/etc", "force")
    assert r.returncode == 1 and "authentication required" in r.stderr, r.stderr
    r = cli_in(attacker.netns, "--remote-host", remote, "volume", "start", "x")
    assert r.returncode == 1 and "authentication required" in r.stderr, r.stderr
    answers = run_in(attacker.netns, f"""
        out = []
        for tls in (True, False):
            out.append(call("{host1}", {PORT}, "POST", "/api/v1/volumes",
                            {{"name": "x", "bricks": ["{host1}:/etc"], "force": True}}, tls=tls))
            out.append(call("{host1}", {PORT}, "POST", "/api/v1/volumes/x/start", {{}}, tls=tls))
            out.append(call("{host1}", {PORT}, "GET", "/api/v1/volumes", tls=tls))
            out.append(call("{host1}", {PORT}, "POST", "/api/v1/tokens",
                            {{"name": "mine", "role": "admin"}}, tls=tls))
            # what a volume's clients and heal look like is not for strangers either
            out.append(call("{host1}", {PORT}, "GET", "/api/v1/volumes/x/status/clients",
                            tls=tls))
            out.append(call("{host1}", {PORT}, "GET", "/api/v1/volumes/x/heal/task", tls=tls))
            # nor a geo-replication session to a secondary of the attacker's
            out.append(call("{host1}", {PORT}, "POST", "/api/v1/volumes/x/geo-replication",
                            {{"secondary": "{evil}::loot", "action": "create"}}, tls=tls))
            out.append(call("{host1}", {PORT}, "GET", "/api/v1/geo-replication", tls=tls))
            # nor may it have its own certificate admitted to a volume (push-pem's
            # route on a secondary: a geo-replication or admin token only)
            out.append(call("{host1}", {PORT}, "POST",
                            "/api/v1/volumes/x/geo-replication/primaries",
                            {{"certs": [open("{attacker.workdir}/trust/node.pem").read()]}},
                            tls=tls))
            # nor withdraw what push-pem admitted (a geo-replication session's delete)
            out.append(call("{host1}", {PORT}, "DELETE",
                            "/api/v1/volumes/x/geo-replication/primaries",
                            {{"certs": [open("{attacker.workdir}/trust/node.pem").read()]}},
                            tls=tls))
        print(json.dumps(out))
    """)
    assert [a[0] for a in answers] == [401, 401, 401, 403, 401, 401, 401, 401, 401, 401] * 2, \
        answers
    assert all("error" in a[1] for a in answers)
    assert states(members) == before

    # 2. a read-only token: reads, but changes nothing
    token = n1.ok("token", "create", "auditor", "--role", "read-only").out.splitlines()[1]
    env = {"GLUSTERPY_TOKEN": token}
    before = states(members)
    r = cli_in(attacker.netns, "--remote-host", remote, "volume", "list", env=env)
    assert r.returncode == 0 and "No volumes present" in r.stdout, r.stderr
    r = cli_in(attacker.netns, "--remote-host", remote, "volume", "create", "x",
               f"{host1}:/etc", "force", env=env)
    assert r.returncode == 1 and "read-only token may not change state" in r.stderr, r.stderr
    r = cli_in(attacker.netns, "--remote-host", remote, "peer", "probe", f"{evil}:{PORT}",
               env=env)
    assert r.returncode == 1 and "read-only" in r.stderr
    r = cli_in(attacker.netns, "--remote-host", remote, "volume", "geo-replication", "x",
               f"{evil}::loot", "create", "push-pem", env=env)
    assert r.returncode == 1 and "read-only token may not change state" in r.stderr, r.stderr
    r = cli_in(attacker.netns, "--remote-host", remote, "token", "list", env=env)
    assert r.returncode == 1 and "managed on the node itself" in r.stderr
    # a forged token with the right name, and the right token's pin on it
    name, _secret, pin = token.split(".")
    answers = run_in(attacker.netns, f"""
        print(json.dumps([
            call("{host1}", {PORT}, "GET", "/api/v1/volumes",
                 headers={{"Authorization": "Bearer {name}.AAAAAAAA.{pin}"}}),
            call("{host1}", {PORT}, "DELETE", "/api/v1/volumes/x",
                 headers={{"Authorization": "Bearer {token}"}}),
            call("{host1}", {PORT}, "GET", "/api/v1/volumes",
                 headers={{"Authorization": "Basic {token}"}}),
            call("{host1}", {PORT}, "POST", "/api/v1/volumes/x/geo-replication/primaries",
                 {{"certs": [open("{attacker.workdir}/trust/node.pem").read()]}},
                 headers={{"Authorization": "Bearer {token}"}}),
            call("{host1}", {PORT}, "DELETE", "/api/v1/volumes/x/geo-replication/primaries",
                 {{"certs": [open("{attacker.workdir}/trust/node.pem").read()]}},
                 headers={{"Authorization": "Bearer {token}"}}),
        ]))
    """)
    assert [a[0] for a in answers] == [401, 403, 401, 403, 403], answers
    assert states(members) == before

    # 3. a non-member peer: the attacker's own node certificate, none, a
    # member's uuid claimed in the header, plain HTTP
    cert, key = attacker.workdir / "trust" / "node.pem", attacker.workdir / "trust" / "node.key"
    plan = {"txn": "t", "op": "create", "args": {"name": "x"}, "name": "x", "old": None,
            "new": {"name": "x", "bricks": [{"host": host1, "path": "/etc", "node": n1.uuid()}],
                    "status": "Created", "options": {}, "version": 1}, "force": True}
    routes = [("POST", "/api/v1/cluster/lock", {"txn": "t", "holder": "evil"}),
              ("POST", "/api/v1/cluster/stage", plan),
              ("POST", "/api/v1/cluster/commit", {"plan": plan}),
              ("POST", "/api/v1/cluster/peers", {"txn": "t", "peer": {
                  "uuid": attacker.uuid(), "hostnames": [evil], "port": PORT,
                  "cert": cert.read_text()}}),
              ("DELETE", f"/api/v1/cluster/peers/{n2.uuid()}", None),
              ("POST", "/api/v1/cluster/leave", {}),
              ("GET", "/api/v1/local/bricks", None),
              ("GET", "/api/v1/local/clients/x", None),
              ("GET", "/api/v1/local/georep/x", None)]
    answers = run_in(attacker.netns, f"""
        routes = json.loads({json.dumps(json.dumps(routes))})
        out = []
        for method, path, body in routes:
            out.append(call("{host1}", {PORT}, method, path, body, cert="{cert}", key="{key}"))
            out.append(call("{host1}", {PORT}, method, path, body,
                            headers={{"X-Glusterpy-Node": "{n2.uuid()}"}}))
            out.append(call("{host1}", {PORT}, method, path, body, tls=False,
                            headers={{"X-Glusterpy-Node": "{n2.uuid()}"}}))
        out.append(call("{host1}", {PORT}, "POST", "/api/v1/cluster/join", {{"nodes": [{{
            "uuid": "{attacker.uuid()}", "hostnames": ["{evil}"], "port": {PORT},
            "cert": open("{cert}").read()}}], "volumes": {{}}}}))
        print(json.dumps(out))
    """)
    for (method, path, _), i in zip(routes, range(0, 3 * len(routes), 3)):
        with_cert, claimed, plain = answers[i:i + 3]
        # an unpinned certificate fails the TLS handshake; without one, 403
        assert with_cert[0] == "refused", (path, with_cert)
        assert claimed[0] == 403 and "members of this node's pool" in claimed[1]["error"], \
            (path, claimed)
        assert plain[0] == 403, (path, plain)
    assert answers[-1][0] == 403 and "already part of another cluster" in \
        answers[-1][1]["error"], answers[-1]
    # the attacker's daemon tries to pull node 1 into its pool
    r = attacker.cli("peer", "probe", f"{host1}:{PORT}")
    assert r.rc == 1 and "already part of another cluster" in r.text, r.text
    assert states(members) == before
    assert sorted(os.listdir("/etc")) == etc_before
    assert "x" not in n1.ok("volume", "list").out.split()

    # with management TLS on, a plain-text GETSPEC from another host gets nothing
    (n1.workdir / "secure-access").write_text("")
    try:
        answer = run_in(attacker.netns, f"""
            import os, trio
            os.environ["GLUSTERPY_SECURE_ACCESS"] = "0"
            from glusterpy.gfapi.mgmt import fetch_volfile, volfile_servers
            try:
                trio.run(fetch_volfile, volfile_servers("{host1}", {PORT}), "x")
                print(json.dumps("fetched"))
            except BaseException as e:
                print(json.dumps(f"refused: {{type(e).__name__}}"))
        """)
        assert answer.startswith("refused"), answer
    finally:
        (n1.workdir / "secure-access").unlink()

    # every refusal is in node 1's audit log, with the attacker's address
    refused = refused_in_audit(n1, evil)
    ops_refused = {e["op"] for e in refused}
    assert {"POST /api/v1/volumes", "POST /api/v1/cluster/stage",
            "POST /api/v1/cluster/commit", "peer probe"} <= ops_refused, ops_refused
    assert any((e["who"] or {}).get("token") == "auditor" for e in refused)


def test_a_detached_peer_is_refused_at_once(pool):
    n1, n2, _ = pool
    n1.ok("--mode=script", "peer", "detach", f"{SUBNET}.2")
    before = states([n1])
    host1 = f"{SUBNET}.1"
    cert, key = n2.workdir / "trust" / "node.pem", n2.workdir / "trust" / "node.key"
    answers = run_in(n2.netns, f"""
        print(json.dumps([
            call("{host1}", {PORT}, "POST", "/api/v1/cluster/lock", {{"txn": "t", "holder": "x"}},
                 cert="{cert}", key="{key}"),
            call("{host1}", {PORT}, "GET", "/api/v1/local/bricks", cert="{cert}", key="{key}"),
        ]))
    """)
    # (with no peer left, node 1 asks no certificate: a 403; with peers, the
    # handshake itself fails on a certificate it no longer pins)
    assert all(a[0] == "refused" or a[0] == 403 and "members of this node's pool" in
               a[1]["error"] for a in answers), answers
    assert states([n1]) == before
    # the pool goes on: node 2 may be probed again, and is pinned again
    n1.ok("peer", "probe", f"{SUBNET}.2:{PORT}")
    assert "Connected" in n1.ok("peer", "status").out
