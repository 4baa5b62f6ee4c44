"""`volume status NAME clients` (issue 20): a real glusterpyd, real bricks
and a real gfapi client in this process.

The client shows on the bricks it talks to - its address is one of this
process's own TCP sockets, the bytes cover what it wrote - and is gone once
it unmounts; the daemon's own probe of the bricks never shows.  Bad input
gets GlusterFS's answers: 404 for an unknown volume, "Volume NAME is not
started" for a stopped one, from the API and the CLI alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


def my_tcp_ports() -> set[int]:
    """The local ports of this process's TCP sockets (/proc: its fds'
    socket inodes, found in the namespace's tcp tables)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def clients_doc(d, name: str) -> dict:
    status, doc = d.api("GET", f"/api/v1/volumes/{name}/status/clients")
    assert status == 200, doc
    return doc


def test_status_clients_api_and_cli(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        # bad input first: the errors gluster gives
        status, doc = d.api("GET", "/api/v1/volumes/nosuch/status/clients")
        assert (status, doc) == (404, {"error": "Volume nosuch does not exist"})
        r = d.cli("volume", "status", "nosuch", "clients")
        assert r.rc == 1 and r.err.strip() == "Volume nosuch does not exist", r
        d.ok("volume", "create", "cv", f"127.0.0.1:{tmp_path / 'b0'}",
             f"127.0.0.1:{tmp_path / 'b1'}")
        status, doc = d.api("GET", "/api/v1/volumes/cv/status/clients")
        assert (status, doc) == (400, {"error": "Volume cv is not started"})
        r = d.cli("volume", "status", "cv", "clients")
        assert r.rc == 1 and r.err.strip() == "Volume cv is not started", r
        assert d.cli("volume", "status", "cv", "extra", "clients").rc == 1  # usage

        d.ok("volume", "start", "cv")
        doc = clients_doc(d, "cv")
        assert [b["brick"] for b in doc["bricks"]] == [f"127.0.0.1:{tmp_path / n}"
                                                       for n in ("b0", "b1")]
        # nobody mounted: the daemon's probe does not count itself
        assert all(b["online"] and b["clients"] == [] for b in doc["bricks"]), doc

        payload = os.urandom(256 * 1024)
        with Volume("127.0.0.1", "cv", port=d.port) as vol:
            with vol.fopen("/big", "wb") as f:
                f.write(payload)
            doc = clients_doc(d, "cv")
            mine = my_tcp_ports()
            for b in doc["bricks"]:
                assert len(b["clients"]) == 1, doc
                c = b["clients"][0]
                host, port = c["hostname"].rsplit(":", 1)
                assert host == "127.0.0.1" and int(port) in mine, (c, mine)
                assert c["bytes_read"] > 0 and c["bytes_written"] > 0, c
                assert isinstance(c["op_version"], int) and c["op_version"] > 0, c
            # the file went to one brick: what it read covers the data
            assert max(b["clients"][0]["bytes_read"] for b in doc["bricks"]) >= len(payload)

            text = d.ok("volume", "status", "cv", "clients").out
            assert text.startswith("Client connections for volume cv\n"), text
            assert text.count("Clients connected : 1") == 2, text
            assert f"Brick : 127.0.0.1:{tmp_path / 'b1'}" in text
            hostname_lines = [ln for ln in text.splitlines() if ln.startswith("127.0.0.1:")]
            assert [ln.split()[0] for ln in hostname_lines] == \
                [b["clients"][0]["hostname"] for b in doc["bricks"]]
            assert all(int(ln.split()[1]) > 0 for ln in hostname_lines)
            # `all` lists every started volume the same way
            assert d.ok("volume", "status", "all", "clients").out.count(
                "Clients connected : 1") == 2
        # unmounted: gone from every brick
        wait_for(lambda: all(b["clients"] == [] for b in clients_doc(d, "cv")["bricks"]),
                 15, "the client to leave the bricks")
        assert d.ok("volume", "status", "cv", "clients").out.count(
            "Clients connected : 0") == 2
        status, spec = d.api("GET", "/api/v1/openapi.json")
        op = spec["paths"]["/api/v1/volumes/{name}/status/clients"]["get"]
        assert "clients" in op["summary"] and \
            "bricks" in op["responses"]["200"]["content"]["application/json"]["schema"][
                "properties"]
