"""`glusterpy vm disk-xml` and `glusterpy vm create-image` (glusterpy/vm.py).

Without processes: the servers a volume's disk names (every node holding a
brick, each with its own glusterpyd port), the <disk> element's shape, and
the qcow2 header written in-process - checked by `qemu-img check` and
`qemu-img info` on local files, and byte for byte against what
`qemu-img create -f qcow2` writes.

Against a glusterpyd on a free port: images created through gfapi land on
the brick as a sparse raw file or a qcow2 image qemu-img accepts; the XML
wrapped in a minimal domain passes libvirt's `virt-xml-validate`; wrong
input - an unknown volume or image, a stopped volume, an image that
exists, a size or path that is not one, a format that does not match -
fails with a clear message and a non-zero status, and changes nothing on
the bricks or in the daemon's state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from glusterpy import vm
from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, snapshot

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (make test installs it)")
    return path


# -- without processes ---------------------------------------------------------------


POOL = [{"uuid": "u1", "port": 24007}, {"uuid": "u2", "port": 24417},
        {"uuid": "u3", "port": 24999}]


def volume(*bricks: tuple[str, str], transport: str = "tcp") -> dict:
    return {"name": "vms", "transport": transport,
            "bricks": [{"host": h, "node": n, "path": f"/b/{i}", "name": f"{h}:/b/{i}"}
                       for i, (h, n) in enumerate(bricks)]}


def test_servers_are_the_brick_nodes_with_their_daemons_ports():
    vol = volume(("node1", "u1"), ("node2", "u2"), ("node3", "u3"), ("node1", "u1"),
                 ("node2", "u2"), ("node3", "u3"))
    assert vm.volume_servers(vol, POOL) == [("node1", 24007), ("node2", 24417),
                                            ("node3", 24999)]
    # an IPv6 brick host is written without brackets, as libvirt wants it
    assert vm.volume_servers(volume(("[fd00::1]", "u2")), POOL) == [("fd00::1", 24417)]


def test_servers_refuse_a_brick_on_an_unknown_node_and_an_empty_volume():
    with pytest.raises(vm.VmError, match="node u9, which is not in the daemon's pool"):
        vm.volume_servers(volume(("node1", "u1"), ("ghost", "u9")), POOL)
    with pytest.raises(vm.VmError, match="has no bricks"):
        vm.volume_servers(volume(), POOL)
    with pytest.raises(vm.VmError, match="over tcp only"):
        vm.transport_of(volume(("node1", "u1"), transport="rdma"))


def test_disk_xml_shape():
    text = vm.disk_xml("vms", "/images/web 1.qcow2", [("node1", 24007), ("node2", 24417)],
                       fmt="qcow2", cache="writeback", target="vdb")
    disk = ET.fromstring(text)
    assert (disk.tag, disk.attrib) == ("disk", {"type": "network", "device": "disk"})
    assert [child.tag for child in disk] == ["driver", "source", "target"]
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "writeback"}
    source = disk.find("source")
    assert source.attrib == {"protocol": "gluster", "name": "vms/images/web 1.qcow2"}
    assert [h.attrib for h in source.findall("host")] == [
        {"name": "node1", "port": "24007", "transport": "tcp"},
        {"name": "node2", "port": "24417", "transport": "tcp"}]
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    # names that mean something in XML are escaped, not pasted
    assert ET.fromstring(vm.disk_xml("v", "a&b<c>'\".img", [("h", 1)])).find(
        "source").get("name") == "v/a&b<c>'\".img"


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "vmdk"}, "format 'vmdk'"),
    ({"cache": "fast"}, "cache 'fast'"),
    ({"target": "sda"}, "target 'sda'"),
    ({"target": "vd1"}, "target 'vd1'"),
])
def test_disk_xml_refuses_values_libvirt_would_not_take(kwargs, message):
    with pytest.raises(vm.VmError, match=message):
        vm.disk_xml("v", "d.img", [("h", 24007)], **kwargs)


@pytest.mark.parametrize("image", ["", "/", "a//b", "../etc/passwd", "a/./b", "x/..", "a\0b"])
def test_image_paths_stay_inside_the_volume(image):
    with pytest.raises(vm.VmError, match="not an image path inside a volume"):
        vm.image_path(image)


def test_sizes_round_up_to_sectors_as_qemu_img_does():
    assert [vm.round_size(n) for n in (1, 512, 513, 1000, 16 << 20)] == \
        [512, 512, 1024, 1024, 16 << 20]
    with pytest.raises(vm.VmError):
        vm.round_size(0)
    assert vm.format_size(16 << 20) == "16 MiB"
    assert vm.format_size(3 << 29) == "1.5 GiB"
    assert vm.format_size(700) == "700 bytes"


def test_qcow2_header_is_the_one_qemu_img_writes(tmp_path):
    need("qemu-img")
    theirs = tmp_path / "theirs.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(theirs), "10G"], check=True,
                   timeout=30)
    ours = vm.qcow2_metadata(10 << 30)
    # same header fields, same cluster layout; qemu-img adds an optional
    # feature-name table after the header, we end the extensions at once
    assert ours[:vm.QCOW2_HEADER_LENGTH] == theirs.read_bytes()[:vm.QCOW2_HEADER_LENGTH]
    assert len(ours) == theirs.stat().st_size


@pytest.mark.parametrize("size", [512, 1000, 16 << 20, 10 << 30, 1 << 40, 2 << 50])
def test_qcow2_images_pass_qemu_img_check(tmp_path, size):
    need("qemu-img")
    image = tmp_path / "disk.qcow2"
    image.write_bytes(vm.qcow2_metadata(size))
    check = subprocess.run(["qemu-img", "check", "--output=json", str(image)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                                     capture_output=True, text=True, check=True,
                                     timeout=30).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == vm.round_size(size)
    assert info["format-specific"]["data"]["compat"] == "1.1"


def test_qcow2_image_takes_writes_and_stays_consistent(tmp_path):
    """QEMU allocates clusters, L2 tables and refcount blocks in our image."""
    need("qemu-io")
    image = tmp_path / "disk.qcow2"
    image.write_bytes(vm.qcow2_metadata(4 << 30))
    io = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x3c 0 3M",
                         "-c", "write -P 0x3d 3G 1M", "-c", "read -P 0x3c 0 3M",
                         "-c", "read -P 0x3d 3G 1M", "-c", "read -P 0 1G 64k", str(image)],
                        capture_output=True, text=True, timeout=60)
    assert io.returncode == 0 and "Pattern verification failed" not in io.stdout, io.stdout
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_qcow2_refuses_sizes_its_l1_table_cannot_hold():
    with pytest.raises(vm.VmError, match="larger than a qcow2 image"):
        vm.qcow2_metadata(1 << 62)


# -- against glusterpyd -------------------------------------------------------------


def brick_state(*bricks: Path) -> dict[str, tuple[int, bytes]]:
    """Every brick file's size and first bytes, the .glusterfs tree included."""
    out = {}
    for b in bricks:
        for p in sorted(Path(b).rglob("*")):
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as f:
                    out[str(p)] = (p.stat().st_size, f.read(4096))
            else:
                out[str(p)] = (-1, b"")
    return out


def domain_with(disk: str) -> str:
    """The smallest domain libvirt's schema takes around a <disk>."""
    return ("<domain type='qemu'>\n  <name>glusterpy-disk-check</name>\n"
            "  <memory unit='MiB'>256</memory>\n"
            "  <os><type arch='x86_64'>hvm</type></os>\n"
            f"  <devices>\n{disk}\n  </devices>\n</domain>\n")


def virt_xml_validate(tmp_path: Path, disk: str) -> subprocess.CompletedProcess:
    need("virt-xml-validate")
    need("xmllint")  # virt-xml-validate runs it
    path = tmp_path / "domain.xml"
    path.write_text(domain_with(disk))
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True,
                          text=True, timeout=60)


@needs_root
def test_create_image_and_disk_xml_on_a_live_volume(tmp_path):
    bricks = [tmp_path / f"b{i}" for i in range(3)]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vms", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "vms")

        r = d.ok("vm", "create-image", "vms", "disk.img", "64M")
        assert r.out.strip() == f"created gluster://127.0.0.1:{d.port}/vms/disk.img: raw, 64 MiB"
        for b in bricks:  # a sparse file of the size asked, on every replica
            st = (b / "disk.img").stat()
            assert st.st_size == 64 << 20 and st.st_blocks * 512 < 1 << 20

        r = d.ok("vm", "create-image", "vms", "web.qcow2", "20G", "--format", "qcow2")
        assert "qcow2, 20 GiB" in r.out
        metadata = vm.qcow2_metadata(20 << 30)
        for b in bricks:   # the metadata, then sparse zeros to the end of its cluster
            content = (b / "web.qcow2").read_bytes()
            assert content == metadata.ljust(vm.qcow2_file_length(metadata), b"\0")
            assert len(content) % 65536 == 0
        if shutil.which("qemu-img"):
            check = subprocess.run(["qemu-img", "check", str(bricks[0] / "web.qcow2")],
                                   capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr

        # SIZE rounds up to whole sectors, as qemu-img rounds it
        assert "1 KiB" in d.ok("vm", "create-image", "vms", "odd.img", "1000").out
        assert (bricks[0] / "odd.img").stat().st_size == 1024

        # the disk XML: one host (every brick is on this node) with the daemon's port
        xml = d.ok("vm", "disk-xml", "vms", "disk.img").out
        disk = ET.fromstring(xml)
        assert disk.find("source").get("name") == "vms/disk.img"
        assert [h.attrib for h in disk.find("source").findall("host")] == [
            {"name": "127.0.0.1", "port": str(d.port), "transport": "tcp"}]
        assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none"}
        assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
        done = virt_xml_validate(tmp_path, xml)
        assert done.returncode == 0, done.stdout + done.stderr

        xml = d.ok("vm", "disk-xml", "vms", "web.qcow2", "--format", "qcow2", "--cache",
                   "writethrough", "--target", "vdc").out
        assert ET.fromstring(xml).find("driver").get("cache") == "writethrough"
        done = virt_xml_validate(tmp_path, xml)
        assert done.returncode == 0, done.stdout + done.stderr
        # the schema does refuse what is not a disk (the check is a real one)
        done = virt_xml_validate(tmp_path, xml.replace("bus=\"virtio\"", "bus=\"floppy-ish\""))
        assert done.returncode != 0


@needs_root
def test_wrong_input_fails_clearly_and_changes_nothing(tmp_path, monkeypatch):
    brick = tmp_path / "b1"
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vms", f"127.0.0.1:{brick}")
        d.ok("volume", "create", "idle", f"127.0.0.1:{tmp_path / 'b2'}")
        d.ok("volume", "start", "vms")
        d.ok("vm", "create-image", "vms", "disk.img", "16M")
        d.ok("vm", "create-image", "vms", "web.qcow2", "1G", "--format", "qcow2")
        with Volume("127.0.0.1", "vms", port=d.port) as vol:
            vol.mkdir("/images")
        before_bricks = brick_state(brick, tmp_path / "b2")
        before_state = snapshot(d.workdir)

        failures = [
            (("vm", "disk-xml", "nosuch", "disk.img"), 1,
             "vm disk-xml: failed: Volume nosuch does not exist"),
            (("vm", "disk-xml", "vms", "missing.img"), 1,
             "vm disk-xml: failed: image missing.img does not exist in volume vms"),
            (("vm", "disk-xml", "vms", "no/such/dir.img"), 1,
             "image no/such/dir.img does not exist in volume vms"),
            (("vm", "disk-xml", "vms", "images"), 1, "images in volume vms is not a regular file"),
            (("vm", "disk-xml", "idle", "disk.img"), 1, "volume idle is not started"),
            (("vm", "disk-xml", "vms", "disk.img", "--format", "qcow2"), 1,
             "vms/disk.img is not a qcow2 image"),
            (("vm", "disk-xml", "vms", "../disk.img"), 1, "not an image path"),
            (("vm", "disk-xml", "vms", "disk.img", "--target", "hda"), 1, "target 'hda'"),
            (("vm", "create-image", "nosuch", "x.img", "1G"), 1,
             "vm create-image: failed: Volume nosuch does not exist"),
            (("vm", "create-image", "vms", "disk.img", "1G"), 1,
             "image disk.img already exists in volume vms"),
            (("vm", "create-image", "vms", "nodir/x.img", "1G"), 1,
             "directory nodir does not exist in volume vms"),
            (("vm", "create-image", "idle", "x.img", "1G"), 1, "volume idle is not started"),
            (("vm", "create-image", "vms", "x.img", "lots"), 2, "'lots' is not a size"),
            (("vm", "create-image", "vms", "x.img", "0"), 2, "more than 0 bytes"),
            (("vm", "create-image", "vms", "x.qcow2", "4E", "--format", "qcow2"), 1,
             "larger than a qcow2 image"),
            (("vm", "create-image", "vms", "a/../x.img", "1G"), 2, "not an image path"),
        ]
        for args, rc, message in failures:
            r = d.cli(*args)
            assert r.rc == rc, (args, r)
            assert message in r.err, (args, r.err)
            assert r.out == "", (args, r.out)   # no half-printed XML
        # argparse's own refusals (exit 2)
        for args in (("vm", "disk-xml", "vms", "disk.img", "--format", "vmdk"),
                     ("vm", "disk-xml", "vms", "disk.img", "--cache", "fast"),
                     ("vm", "create-image", "vms", "x.img")):
            assert d.cli(*args).rc == 2

        # a raw disk that starts with a qcow2 header gets XML and a warning
        r = d.ok("vm", "disk-xml", "vms", "web.qcow2")
        assert "starts with a qcow2 header" in r.err and "<disk" in r.out

        assert brick_state(brick, tmp_path / "b2") == before_bricks
        assert snapshot(d.workdir) == before_state

        # a daemon that is not there: the same clear failure as the volume commands
        r = d.cli("vm", "disk-xml", "vms", "disk.img", "--remote-host", "127.0.0.1:1")
        assert r.rc == 1 and "Connection failed" in r.err
        # $GLUSTERPY_REMOTE_HOST names the daemon when --remote-host does not
        from glusterpy.cli.main import main
        monkeypatch.setenv("GLUSTERPY_REMOTE_HOST", d.remote)
        assert main(["vm", "disk-xml", "vms", "disk.img"]) == 0
