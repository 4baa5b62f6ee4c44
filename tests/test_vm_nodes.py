"""`glusterpy vm disk-xml` on three nodes: a <host> per node, each with its
own glusterpyd's port, and QEMU reaching the disk through them when the
first node's daemon is gone.

Three glusterpyd in network namespaces of their own (the switch of
tests/test_glusterd_cluster.py), on three different ports - 24417, 24418,
24419 - so that a host's port can only come from its own node.  A replica 3
volume over the three nodes; the image is made through the second node's
daemon.  The XML from the first node validates with virt-xml-validate and
names the three nodes with their ports.  Then the first node's glusterpyd
is killed (kill -9; its brick keeps serving) and QEMU, given the XML's
servers the way libvirt passes them (a `server` array in the gluster
driver's JSON options), fetches the volfile from the next node and writes
and reads the disk; all three bricks hold what it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from test_glusterd_cluster import SUBNET, switched_namespaces
from test_glusterd_support import Daemon
from test_vm_cli import virt_xml_validate

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

PORTS = (24417, 24418, 24419)


def gluster_json(xml: str) -> str:
    """QEMU's -drive/JSON form of libvirt's <disk>: every <host> a server,
    in order (what libvirt's qemuBlockStorageSourceGetGlusterProps builds)."""
    disk = ET.fromstring(xml)
    source = disk.find("source")
    volume, _, path = source.get("name").partition("/")
    servers = [{"type": "inet", "host": h.get("name"), "port": h.get("port")}
               for h in source.findall("host")]
    return "json:" + json.dumps({"driver": disk.find("driver").get("type"),
                                 "file": {"driver": "gluster", "volume": volume, "path": path,
                                          "server": servers}})


def test_disk_xml_names_every_node_and_qemu_survives_the_first(tmp_path):
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io is not installed (make test installs it)")
    hosts = [f"{SUBNET}.{i}" for i in (1, 2, 3)]
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=port, address=host, netns=ns)
                 for i, (host, port, ns) in enumerate(zip(hosts, PORTS, namespaces), 1)]
        try:
            for d in nodes:
                d.start()
            n1, n2, _ = nodes
            n1.ok("peer", "probe", f"{hosts[1]}:{PORTS[1]}")
            n1.ok("peer", "probe", f"{hosts[2]}:{PORTS[2]}")
            bricks = [tmp_path / f"brick{i}" for i in (1, 2, 3)]
            n1.ok("volume", "create", "vms", "replica", "3",
                  *(f"{h}:{b}" for h, b in zip(hosts, bricks)))
            n1.ok("volume", "start", "vms")
            r = n2.ok("vm", "create-image", "vms", "disk.img", "16M")
            assert r.out.strip() == f"created gluster://{hosts[0]}:{PORTS[0]}/vms/disk.img: " \
                                    "raw, 16 MiB"

            xml = n1.ok("vm", "disk-xml", "vms", "disk.img").out
            source = ET.fromstring(xml).find("source")
            assert [(h.get("name"), int(h.get("port")), h.get("transport"))
                    for h in source.findall("host")] == [
                        (h, p, "tcp") for h, p in zip(hosts, PORTS)]
            # every node answers the same
            assert n2.ok("vm", "disk-xml", "vms", "disk.img").out == xml
            done = virt_xml_validate(tmp_path, xml)
            assert done.returncode == 0, done.stdout + done.stderr

            n1.kill9()   # its brick keeps serving; its volfile server is gone
            spec = gluster_json(xml)
            io = subprocess.run(["ip", "netns", "exec", namespaces[0], "qemu-io", "-c",
                                 "write -P 0x51 1M 1M", "-c", "read -P 0x51 1M 1M", spec],
                                capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
            assert io.returncode == 0, io.stdout + io.stderr
            assert "wrote 1048576/1048576" in io.stdout and \
                "Pattern verification failed" not in io.stdout, io.stdout
            for b in bricks:
                with open(b / "disk.img", "rb") as f:
                    f.seek(1 << 20)
                    assert f.read(1 << 20) == b"\x51" * (1 << 20), b
        finally:
            for d in nodes:
                d.cleanup()
