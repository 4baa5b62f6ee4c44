"""NBD exports on three nodes: `volume set vms nbd.export on` on a replica 3
volume starts an NBD server on every node (its own network namespace,
NBD's port 10809 on each - tests/test_glusterd_cluster.py's switch), each
a gfapi client of all three bricks; what QEMU writes through one node's
server, another node's server reads; `vm disk-xml --protocol nbd` names
the first node as the disk's host and the others in a comment, validates,
and `--host` picks another.  A node's glusterpyd killed leaves its NBD
server serving, as its brick does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from test_glusterd_cluster import SUBNET, switched_namespaces
from test_glusterd_support import Daemon, wait_for
from test_vm_cli import virt_xml_validate

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

PORTS = (24427, 24428, 24429)


def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_every_brick_node_serves_the_export(tmp_path):
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io is not installed (make test installs it)")
    hosts = [f"{SUBNET}.{i}" for i in (1, 2, 3)]
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=port, address=host, netns=ns)
                 for i, (host, port, ns) in enumerate(zip(hosts, PORTS, namespaces), 1)]
        try:
            for d in nodes:
                d.start()
            n1, n2, n3 = nodes
            n1.ok("peer", "probe", f"{hosts[1]}:{PORTS[1]}")
            n1.ok("peer", "probe", f"{hosts[2]}:{PORTS[2]}")
            bricks = [tmp_path / f"brick{i}" for i in (1, 2, 3)]
            n1.ok("volume", "create", "vms", "replica", "3",
                  *(f"{h}:{b}" for h, b in zip(hosts, bricks)))
            n1.ok("volume", "start", "vms")
            n2.ok("vm", "create-image", "vms", "disk.img", "16M")
            n1.ok("volume", "set", "vms", "nbd.export", "on")
            for d in nodes:  # every node started its own server, on NBD's port
                wait_for(lambda: (d.workdir / "run" / "nbd-10809.pid").exists(), 20,
                         f"an NBD server on {d.address}")

            xml = n1.ok("vm", "disk-xml", "vms", "disk.img", "--protocol", "nbd").out
            source = ET.fromstring(xml).find("source")
            assert [(h.get("name"), h.get("port")) for h in source.findall("host")] == \
                [(hosts[0], "10809")]
            assert f"{hosts[1]}:10809, {hosts[2]}:10809" in xml
            done = virt_xml_validate(tmp_path, xml)
            assert done.returncode == 0, done.stdout + done.stderr
            other = n1.ok("vm", "disk-xml", "vms", "disk.img", "--protocol", "nbd",
                          "--host", hosts[2]).out
            assert f'<host name="{hosts[2]}" port="10809"' in other

            url = [f"nbd://{h}:10809/vms/disk.img" for h in hosts]
            io = in_ns(namespaces[0], "qemu-io", "-f", "raw", "-c", "write -P 0x61 1M 1M",
                       "-c", "flush", url[1])
            assert io.returncode == 0, io.stdout + io.stderr
            for u in (url[0], url[2]):   # the other nodes' servers read it
                io = in_ns(namespaces[1], "qemu-io", "-f", "raw", "-r", "-c",
                           "read -P 0x61 1M 1M", u)
                assert io.returncode == 0 and "Pattern verification failed" not in io.stdout, \
                    io.stdout + io.stderr
            for b in bricks:
                with open(b / "disk.img", "rb") as f:
                    f.seek(1 << 20)
                    assert f.read(1 << 20) == b"\x61" * (1 << 20), b

            n1.kill9()   # its NBD server keeps serving, as its brick does
            io = in_ns(namespaces[1], "qemu-io", "-f", "raw", "-c", "write -P 0x62 2M 64k",
                       "-c", "read -P 0x62 2M 64k", url[0])
            assert io.returncode == 0 and "Pattern verification failed" not in io.stdout, \
                io.stdout + io.stderr
        finally:
            for d in nodes:
                d.cleanup()
