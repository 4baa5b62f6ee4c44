"""Three glusterpyd nodes, each in a network namespace of its own.

The test builds the network itself: a namespace acting as the switch (a
Linux bridge), three node namespaces joined to it by veth pairs, addresses
from 10.213.77.0/24 that exist only inside those namespaces (nothing is
routed out of them).  Each node runs glusterpyd on port 24417 - not the
default, as a real deployment may choose - and its bricks run in its
namespace.  Everything (daemons, bricks, namespaces) is removed at the end,
also when the test fails.

What is checked: peer probe joins the nodes and every node's CLI sees and
changes the whole cluster; a volume created from one node, started from
another, is served by bricks on all three and used by a client; refused
operations (bad input, a brick path that only its node can see is wrong,
a peer that is down, a commit that fails on one node) change nothing on any
node - compared byte for byte with snapshots of every working directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from test_glusterd_support import Daemon, snapshot, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

SUBNET = "10.213.77"
PORT = 24417


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def switched_namespaces(count: int):
    """`count` namespaces on one bridge; yields their names."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    tag = uuid.uuid4().hex[:5]
    switch = f"gpysw{tag}"
    nodes = [f"gpyn{tag}{i}" for i in range(1, count + 1)]
    made: list[str] = []
    try:
        try:
            ip("netns", "add", switch)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot make network namespaces: {e.stderr.decode().strip()}")
        made.append(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for i, ns in enumerate(nodes, 1):
            ip("netns", "add", ns)
            made.append(ns)
            inner, outer = f"gv{tag}{i}a", f"gv{tag}{i}b"
            ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "netns", switch)
            ip("-n", ns, "link", "set", inner, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", switch, "link", "set", outer, "master", "br0")
            ip("-n", switch, "link", "set", outer, "up")
        yield nodes
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def in_netns(ns: str, script: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_three_nodes(tmp_path):
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}", netns=ns)
                 for i, ns in enumerate(namespaces, 1)]
        try:
            for d in nodes:
                d.start()
            run_cluster_checks(tmp_path, nodes)
        finally:
            for d in nodes:
                d.cleanup()


def snapshots(nodes) -> list[dict]:
    return [snapshot(d.workdir) for d in nodes]


def run_cluster_checks(tmp_path: Path, nodes: list[Daemon]) -> None:
    n1, n2, n3 = nodes
    h = [f"{SUBNET}.{i}" for i in (1, 2, 3)]

    # -- peers --------------------------------------------------------------
    r = n1.ok("peer", "probe", f"{h[1]}:{PORT}")
    assert r.out.strip() == "peer probe: success"
    n1.ok("peer", "probe", f"{h[2]}:{PORT}")
    assert "already in peer list" in n1.ok("peer", "probe", f"{h[2]}:{PORT}").out
    for d in nodes:
        pool = d.ok("pool", "list", "--json").json()["pool"]
        assert len(pool) == 3 and all(p["connected"] for p in pool), pool
        status = d.ok("peer", "status").out
        assert status.startswith("Number of Peers: 2")
        assert status.count("State: Peer in Cluster (Connected)") == 2
    uuids = {tuple(sorted(p["uuid"] for p in d.ok("pool", "list", "--json").json()["pool"]))
             for d in nodes}
    assert len(uuids) == 1  # everyone knows the same three nodes

    # -- a volume over three nodes, driven from different nodes ---------------
    bricks = [f"{h[i]}:{tmp_path / f'brick{i + 1}'}" for i in range(3)]
    n2.ok("volume", "create", "spread", *bricks)
    n3.ok("volume", "start", "spread")
    infos = {d.ok("volume", "info", "spread").out for d in nodes}
    assert len(infos) == 1 and "Status: Started" in infos.pop()
    rows = n1.ok("volume", "status", "spread", "--json").json()["volumes"][0]["bricks"]
    assert [r["online"] for r in rows] == [True] * 3 and len({r["pid"] for r in rows}) == 3
    # each brick runs in its own node's namespace
    for d, row in zip(nodes, rows):
        assert os.readlink(f"/proc/{row['pid']}/ns/net") == \
            os.readlink(f"/proc/{d.proc.pid}/ns/net")
    n2.ok("volume", "profile", "spread", "start")
    # a client inside node 1's namespace fetches the volfile from node 3
    in_netns(n1.netns, f"""
        from glusterpy.gfapi import Volume
        with Volume("{h[2]}", "spread", port={PORT}) as vol:
            for i in range(30):
                with vol.fopen(f"/f{{i}}", "w") as f:
                    f.write(b"%d" % i)
            assert len(vol.listdir("/")) == 30
    """)
    counts = [len([n for n in os.listdir(tmp_path / f"brick{i}") if n.startswith("f")])
              for i in (1, 2, 3)]
    assert sum(counts) == 30 and all(counts), counts
    # volume profile info from any node gathers every node's bricks
    prof = n3.ok("volume", "profile", "spread", "info", "--json").json()["bricks"]
    assert sorted(b["brick"] for b in prof) == sorted(bricks)
    writes = {b["brick"]: b["report"]["cumulative"]["fops"].get("WRITE", {}).get("hits", 0)
              for b in prof}
    assert sum(writes.values()) == 30 and all(writes.values()), writes
    n1.ok("volume", "profile", "spread", "stop")
    # volume set from node 2 reaches every node's volfiles
    n2.ok("volume", "set", "spread", "performance.cache-size", "40MB")
    for d in nodes:
        assert "option cache-size 40MB" in \
            (d.workdir / "vols/spread/spread.tcp-fuse.vol").read_text()

    # -- refusals change nothing on any node --------------------------------
    before = snapshots(nodes)
    refused = [
        (n1, ["volume", "create", "bad", f"{h[1]}:{tmp_path / 'brick2' / 'inside'}"],
         "containing or be contained"),
        (n1, ["volume", "create", "bad", f"{h[2]}:{n3.workdir / 'b'}"],
         f"Staging failed on {h[2]}"),
        (n3, ["volume", "create", "bad", "replica", "2", f"{h[0]}:{tmp_path / 'w'}",
              f"{h[1]}:{tmp_path / 'x'}", f"{h[2]}:{tmp_path / 'y'}"],
         "not a multiple of replica count"),
        (n2, ["volume", "create", "bad", f"10.213.77.99:{tmp_path / 'z'}"],
         "is not in 'Peer in Cluster' state"),
        (n2, ["volume", "create", "bad", f"127.0.0.1:{tmp_path / 'z'}"],
         "other than localhost"),
        (n3, ["volume", "set", "spread", "no.such.key", "1"], "does not exist"),
        (n1, ["volume", "set", "spread", "network.ping-timeout", "-1"], "not a time"),
        (n2, ["--yes", "volume", "delete", "spread"], "needs to be stopped"),
        (n3, ["--yes", "volume", "stop", "nosuch"], "does not exist"),
        (n1, ["--yes", "peer", "detach", h[1]], "hosts one or more bricks"),
    ]
    for d, argv, message in refused:
        r = d.cli(*argv)
        assert r.rc != 0 and message in r.text, (argv, r.text)
        assert snapshots(nodes) == before, f"{argv} changed some node's state"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    # -- a node that is down: the operation fails cleanly, nothing changes ---------
    n3.stop()
    r = n1.cli("volume", "set", "spread", "performance.cache-size", "50MB")
    assert r.rc != 0 and f"Locking failed on {h[2]}" in r.err, r.text
    assert snapshots(nodes) == before
    peers = {p["hostname"]: p["connected"] for p in
             n1.ok("peer", "status", "--json").json()["peers"]}
    assert peers == {h[1]: True, h[2]: False}
    n3.start()
    n1.ok("volume", "set", "spread", "performance.cache-size", "50MB")
    assert {d.ok("volume", "get", "spread", "performance.cache-size", "--json").json()
            ["options"][0]["value"] for d in nodes} == {"50MB"}

    # -- a commit that fails on one node is undone everywhere ------------------
    more = [f"{h[i]}:{tmp_path / f'more{i + 1}'}" for i in range(3)]
    n1.ok("volume", "create", "fragile", *more)
    before = snapshots(nodes)
    port3 = next(b["port"] for b in n1.ok("volume", "info", "fragile", "--json").json()
                 ["volumes"][0]["bricks"] if b["host"] == h[2])
    # something else holds node 3's brick port: that brick cannot start
    blocker = subprocess.Popen(["ip", "netns", "exec", n3.netns, sys.executable, "-c",
                                "import socket,time; s=socket.socket(); s.setsockopt("
                                "socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                                f"s.bind(('0.0.0.0', {port3})); s.listen(); time.sleep(120)"])
    try:
        wait_for(lambda: in_netns(n3.netns, f"""
            import socket
            s = socket.socket()
            print(s.connect_ex(("{h[2]}", {port3})))""").strip() == "0",
            what="the port blocker")
        r = n2.cli("volume", "start", "fragile")
        assert r.rc != 0 and f"Commit failed on {h[2]}" in r.err, r.text
        for d in nodes:
            assert d.ok("volume", "info", "fragile", "--json").json()["volumes"][0][
                "status"] == "Created"
            assert not [b for b in d.ok("volume", "status", "--json").json()["volumes"]
                        if b["name"] == "fragile"]
        assert snapshots(nodes) == before
        # start force gives a brick whose port is taken another one
        n2.ok("volume", "start", "fragile", "force")
        moved = next(b for b in n1.ok("volume", "info", "fragile", "--json").json()
                     ["volumes"][0]["bricks"] if b["host"] == h[2])
        assert moved["port"] != port3
        rows = n3.ok("volume", "status", "fragile", "--json").json()["volumes"][0]["bricks"]
        assert all(r["online"] for r in rows)
    finally:
        blocker.kill()
        blocker.wait()
    n1.ok("--yes", "volume", "stop", "fragile")
    n3.ok("--yes", "volume", "delete", "fragile")

    # -- audit: each node recorded the operations it took part in ------------
    for d in nodes:
        ops = [(e["op"], e["result"].split(":")[0]) for e in
               d.ok("volume", "log", "spread", "--json").json()["entries"]]
        assert ("create", "success" if d is n2 else "success (committed for a peer)") in ops

    # -- shrinking the pool -------------------------------------------------------
    n1.ok("--yes", "volume", "stop", "spread")
    n2.ok("--yes", "volume", "delete", "spread")
    for d in nodes:
        assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"
    n1.ok("--yes", "peer", "detach", h[2])
    assert len(n2.ok("pool", "list", "--json").json()["pool"]) == 2
    assert n3.ok("peer", "status").out.startswith("Number of Peers: 0")
