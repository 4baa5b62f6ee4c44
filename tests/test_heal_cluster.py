"""Self-heal on three glusterpyd nodes, each in a network namespace.

A replica 3 volume with one brick per node: every node runs a glustershd
of its own, which crawls only its own brick's index (its node uuid against
the bricks' trusted.glusterfs.node-uuid), and `volume heal` asked on any
node gathers every node's daemon (through the peer route) or, for heal
info, reaches every brick from that node.  A brick is killed with kill -9
while a client writes; the daemons on the two other nodes heal it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys

import pytest

from replicate_support import tree_of
from test_glusterd_cluster import PORT, SUBNET, in_netns, ip, switched_namespaces
from test_glusterd_support import Daemon, wait_for
from test_replicate_heal import assert_clean
from glusterpy.glusterd.shd import socket_path

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]


def shd_status(d: Daemon) -> dict:
    """Ask a node's glustershd directly on its control socket (a Unix
    socket: a path, reachable from outside the namespace)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(socket_path(d.workdir.resolve())))
        s.sendall(b'{"op": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(65536)
    return json.loads(data)


def info_counts(d: Daemon, name: str) -> list:
    counts = []
    for line in d.ok("volume", "heal", name, "info").out.splitlines():
        if line.startswith("Number of entries"):
            value = line.rsplit(":", 1)[1].strip()
            counts.append(None if value == "-" else int(value))
    return counts


@contextlib.contextmanager
def peered_nodes(tmp_path):
    """Three glusterpyd nodes, one per namespace, probed into one cluster;
    yields (namespaces, nodes, addresses) and removes it all afterwards."""
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}", netns=ns)
                 for i, ns in enumerate(namespaces, 1)]
        try:
            for d in nodes:
                d.start()
            h = [f"{SUBNET}.{i}" for i in (1, 2, 3)]
            nodes[0].ok("peer", "probe", f"{h[1]}:{PORT}")
            nodes[0].ok("peer", "probe", f"{h[2]}:{PORT}")
            yield namespaces, nodes, h
        finally:
            for d in nodes:
                d.cleanup()


def test_each_node_heals_its_own_brick_index(tmp_path):
    with peered_nodes(tmp_path) as (_, nodes, h):
        n1, n2, n3 = nodes
        base = [tmp_path / f"hb{i}" for i in range(3)]
        n1.ok("volume", "create", "heal3", "replica", "3",
              *[f"{h[i]}:{base[i]}" for i in range(3)])
        n2.ok("volume", "set", "heal3", "cluster.heal-timeout", "5")
        n3.ok("volume", "start", "heal3")
        # one glustershd per node, each crawling its own brick only
        for i, d in enumerate(nodes):
            wait_for(lambda: all(h_["sweeps"] for h_ in shd_status(d)["volumes"]["heal3"]
                                 ["sets"][0]["index_healers"] if h_["local"]), 30,
                     f"node {i + 1}'s glustershd to crawl")
            healers = shd_status(d)["volumes"]["heal3"]["sets"][0]["index_healers"]
            assert [x["local"] for x in healers] == [j == i for j in range(3)], healers
        # once every daemon reaches all three bricks, an index heal asked
        # on node 2 starts on every node
        for d in nodes:
            wait_for(lambda: all(shd_status(d)["volumes"]["heal3"]["sets"][0]["child_up"]),
                     30, "every glustershd to reach every brick")
        r = n2.ok("volume", "heal", "heal3")
        assert "has been successful" in r.out
        # kill -9 node 2's brick while a client in node 1 writes
        pid = n1.ok("volume", "status", "heal3", "--json").json()["volumes"][0][
            "bricks"][1]["pid"]
        in_netns(n1.netns, f"""
            import os, signal, time
            from glusterpy.gfapi import Volume
            with Volume("{h[0]}", "heal3", port={PORT}) as vol:
                for i in range(6):
                    with vol.fopen(f"/f{{i}}", "w") as f:
                        f.write(b"before" * 100)
                os.kill({pid}, signal.SIGKILL)
                afr = vol._avol.graph.by_name["heal3-replicate-0"]
                deadline = time.monotonic() + 10
                while afr.child_up[1] and time.monotonic() < deadline:
                    time.sleep(0.02)
                for i in range(6):
                    with vol.fopen(f"/f{{i}}", "a") as f:
                        f.write(b"after" * 100)
                vol.mkdir("/dir")
        """)
        n2.ok("volume", "start", "heal3", "force")
        wait_for(lambda: all(r["online"] for r in n3.ok(
            "volume", "status", "heal3", "--json").json()["volumes"][0]["bricks"]), 30,
            "node 2's brick back")
        wait_for(lambda: info_counts(n3, "heal3") == [0, 0, 0], 60,
                 "heal info (asked on node 3) to show 0 entries")
        trees = [tree_of(b) for b in base]
        assert trees[0] == trees[1] == trees[2]
        assert (base[1] / "f5").read_bytes() == b"before" * 100 + b"after" * 100
        assert_clean(base)
        # statistics from any node: every brick reported by its own node's
        # daemon; the healing was done by nodes 1 and 3 (their bricks'
        # indices held the entries), not by node 2
        doc = n2.ok("volume", "heal", "heal3", "statistics", "--json").json()
        vol = n1.ok("volume", "info", "heal3", "--json").json()["volumes"][0]
        assert [b["node"] for b in doc["bricks"]] == [b["node"] for b in vol["bricks"]]
        healed = [sum(e["healed"] for e in b["events"]) for b in doc["bricks"]]
        assert healed[1] == 0 and healed[0] + healed[2] >= 1, healed
        text = n1.ok("volume", "heal", "heal3", "statistics").out
        assert text.count("Crawl statistics for brick no") == 3
        assert f"Hostname of brick {h[1]}" in text


# -- a network partition ----------------------------------------------------------

#: a client in a node's namespace, kept alive across the partition: one view
#: of the volume with its quorum (auto, from glusterpyd) and one without
PARTITION_CLIENT = """
import errno, json, time
from pathlib import Path
from glusterpy.gfapi import Volume
ctl = Path({ctl!r})
def wait(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"node {me}: {{what}} did not happen")
        time.sleep(0.05)
me = {me}
with_quorum = Volume({host!r}, "part", port={port})
with_quorum.mount()
without = Volume.from_volfile({volfile!r},
                              xlator_options=["part-replicate-0.quorum-type=none"])
views = {{"quorum": (with_quorum, "/q"), "none": (without, "/n")}}
(ctl / f"ready{{me}}").touch()
wait(lambda: (ctl / "partitioned").exists(), "the partition")
def lookup_everywhere(v):
    # an idle connection is not pinged (as in GlusterFS): a lookup of a new
    # name reaches every brick, and ping-timeout then ends the silent ones
    try:
        v.exists(f"/probe-{{time.monotonic_ns()}}")
    except OSError:
        pass
    return False
for v, _ in views.values():
    afr = v._avol.graph.by_name["part-replicate-0"]
    wait(lambda: lookup_everywhere(v) or afr.child_up == {expect}, f"child_up == {expect}")
results = {{}}
for label, (v, path) in views.items():
    try:
        with v.fopen(path, "r+") as f:
            f.pwrite(b"node{me}" * 512, 0)
        results[label] = "ok"
    except OSError as e:
        results[label] = errno.errorcode.get(e.errno, str(e.errno))
(ctl / f"result{{me}}.json").write_text(json.dumps(results))
with_quorum.umount()
without.umount()
"""


def accuses(path) -> list[bool]:
    """Per client index, whether one brick's copy holds a pending data count
    against it in its trusted.afr.part-client-N changelog."""
    out = []
    for i in range(3):
        try:
            value = os.getxattr(path, f"trusted.afr.part-client-{i}")
        except OSError:
            value = bytes(12)
        out.append(int.from_bytes(value[:4], "big") > 0)
    return out


def test_partition_quorum_refuses_the_minority_side(tmp_path):
    """Node 1 cut off from nodes 2 and 3, a client on each side writing the
    same file.  With the volume's auto quorum the minority side's write
    fails (its client knows) and the majority's is healed to node 1's brick.
    The same writes through views without quorum both succeed and leave
    copies that accuse each other; heal then keeps the majority's copy, so
    the write node 1's client was told had succeeded is gone - the loss
    quorum exists to prevent."""
    with peered_nodes(tmp_path) as (namespaces, nodes, h):
        tag = namespaces[0][len("gpyn"):-1]
        n1, n2, n3 = nodes
        clients = []
        try:
            base = [tmp_path / f"pb{i}" for i in range(3)]
            n1.ok("volume", "create", "part", "replica", "3",
                  *[f"{h[i]}:{base[i]}" for i in range(3)])
            n1.ok("volume", "set", "part", "network.ping-timeout", "3")
            n1.ok("volume", "set", "part", "cluster.heal-timeout", "5")
            n1.ok("volume", "start", "part")
            before = b"before" * 1024

            def written(node: int) -> bytes:
                return (b"node%d" % node) * 512 + before[2560:]
            in_netns(n1.netns, f"""
                from glusterpy.gfapi import Volume
                with Volume("{h[0]}", "part", port={PORT}) as vol:
                    for name in ("q", "n"):
                        with vol.fopen("/" + name, "w") as f:
                            f.write({before!r})
            """)
            ctl = tmp_path / "ctl"
            ctl.mkdir()
            sides = {1: [True, False, False], 3: [False, True, True]}
            for me, expect in sides.items():
                d = nodes[me - 1]
                script = PARTITION_CLIENT.format(
                    ctl=str(ctl), me=me, host=h[me - 1], port=PORT, expect=expect,
                    volfile=str(d.workdir / "vols" / "part" / "part.noperf.vol"))
                clients.append(subprocess.Popen(
                    ["ip", "netns", "exec", d.netns, sys.executable, "-c", script],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            wait_for(lambda: all((ctl / f"ready{me}").exists() for me in sides), 60,
                     "both clients connected")
            # the partition: node 1's port on the switch goes down
            switch_port = ["-n", f"gpysw{tag}", "link", "set", f"gv{tag}1b"]
            ip(*switch_port, "down")
            (ctl / "partitioned").touch()
            for c in clients:
                out, _ = c.communicate(timeout=120)
                assert c.returncode == 0, out
            minority = json.loads((ctl / "result1.json").read_text())
            majority = json.loads((ctl / "result3.json").read_text())
            assert minority["quorum"] in ("EROFS", "ENOTCONN"), minority
            assert majority == {"quorum": "ok", "none": "ok"}, majority
            assert minority["none"] == "ok", minority
            # with quorum, node 1's brick kept its old copy and accuses nobody;
            # without, both sides accuse each other: the makings of a split-brain
            assert (base[0] / "q").read_bytes() == before
            assert accuses(base[0] / "q") == [False, False, False]
            assert (base[0] / "n").read_bytes() == written(1)
            assert accuses(base[0] / "n") == [False, True, True]
            for b in base[1:]:
                assert (b / "q").read_bytes() == (b / "n").read_bytes() == written(3)
                assert accuses(b / "q") == accuses(b / "n") == [True, False, False]
            ip(*switch_port, "up")
            # afr heals towards the copies accused by fewer than quorum-count
            # bricks: nodes 2 and 3.  For /q that loses nothing; for /n it
            # drops node 1's write - acknowledged to its client - which is
            # what refusing it under quorum prevented
            wait_for(lambda: all((b / name).read_bytes() == written(3)
                                 for b in base for name in ("q", "n")), 90,
                     "node 1's brick to be healed from nodes 2 and 3")
            wait_for(lambda: info_counts(n2, "part") == [0, 0, 0], 60,
                     "heal info to show nothing pending")
            assert_clean(base)
            in_netns(n1.netns, f"""
                from glusterpy.gfapi import Volume
                with Volume("{h[0]}", "part", port={PORT}) as vol:
                    for name in ("q", "n"):
                        assert vol.fopen("/" + name, "r").read() == {written(3)!r}
            """)
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
