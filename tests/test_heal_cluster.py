"""Self-heal on three glusterpyd nodes, each in a network namespace.

A replica 3 volume with one brick per node: every node runs a glustershd
of its own, which crawls only its own brick's index (its node uuid against
the bricks' trusted.glusterfs.node-uuid), and `volume heal` asked on any
node gathers every node's daemon (through the peer route) or, for heal
info, reaches every brick from that node.  A brick is killed with kill -9
while a client writes; the daemons on the two other nodes heal it.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from replicate_support import tree_of
from test_glusterd_cluster import PORT, SUBNET, in_netns, switched_namespaces
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


def test_each_node_heals_its_own_brick_index(tmp_path):
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}", netns=ns)
                 for i, ns in enumerate(namespaces, 1)]
        try:
            for d in nodes:
                d.start()
            n1, n2, n3 = nodes
            h = [f"{SUBNET}.{i}" for i in (1, 2, 3)]
            n1.ok("peer", "probe", f"{h[1]}:{PORT}")
            n1.ok("peer", "probe", f"{h[2]}:{PORT}")
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
        finally:
            for d in nodes:
                d.cleanup()
