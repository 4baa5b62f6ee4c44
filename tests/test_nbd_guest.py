"""A TCG guest boots with its disk over NBD - `glusterpy vm disk-xml
--protocol nbd` turned into QEMU's -drive, glusterpy's NBD export of a
replica 3 volume (nbd.export on) - and keeps writing while one of the
volume's brick processes is killed (kill -9): both writes succeed in the
guest and read back in it; after `volume start force` and `volume heal`
the three bricks hold the same bytes, both writes included.  The guest and
its helpers are tests/test_vm_guest.py's (tests/guest/).
"""

from __future__ import annotations

import os
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_glusterd_support import free_port, running_daemon, wait_for
import test_vm_guest
from test_vm_guest import (BOOT, EXIT, JOB, KILL_BETWEEN_WRITES, MiB, boot, brick_rows,
                           heal_counts, pattern)

# test_vm_guest's fixture, bound by assignment (see tests/test_bd.py)
kernel = test_vm_guest.kernel

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")]


def drive_from_nbd_disk_xml(xml: str) -> str:
    """QEMU's -drive for libvirt's NBD <disk>, as libvirt would give it."""
    disk = ET.fromstring(xml)
    driver, source = disk.find("driver"), disk.find("source")
    assert source.get("protocol") == "nbd" and disk.find("target").get("bus") == "virtio"
    host = source.find("host")
    url = f"nbd://{host.get('name')}:{host.get('port')}/{source.get('name')}"
    return f"file={url},if=virtio,cache={driver.get('cache')},format={driver.get('type')}"


def test_guest_on_nbd_keeps_writing_while_a_replica_brick_is_killed(kernel, tmp_path):
    part_a, part_b = pattern(12), pattern(13)
    bricks = [tmp_path / f"b{i}" for i in range(3)]
    port = free_port()
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vmn", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "vmn")
        d.ok("vm", "create-image", "vmn", "disk.img", "16M")
        d.ok("volume", "set", "vmn", "nbd.port", str(port))
        d.ok("volume", "set", "vmn", "nbd.export", "on")
        drive = drive_from_nbd_disk_xml(
            d.ok("vm", "disk-xml", "vmn", "disk.img", "--protocol", "nbd").out)
        assert drive == (f"file=nbd://127.0.0.1:{port}/vmn/disk.img,if=virtio,cache=none,"
                         "format=raw")
        with boot(kernel, tmp_path, drive, KILL_BETWEEN_WRITES.format(wait=JOB),
                  {"part-a": part_a, "part-b": part_b}, "nbd") as guest:
            guest.wait_for("GUEST-PART-A-WRITTEN", BOOT + JOB)
            victim = brick_rows(d, "vmn")[1]["pid"]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{victim}").exists() or
                     Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[0]
                     == "Z", 10, "the killed brick to be gone")
            guest.send("go")   # the second write starts with the brick dead
            guest.wait_for("GUEST-JOB-EXIT", JOB)
            rc = guest.wait_exit(EXIT)
            console = guest.console
        assert "GUEST-VERIFY-OK" in console and "GUEST-JOB-EXIT 0" in console, console[-3000:]
        assert rc == 0, f"QEMU exited with {rc}; see {guest.log}"

        d.ok("volume", "start", "vmn", "force")
        wait_for(lambda: all(r["online"] for r in brick_rows(d, "vmn")), 60,
                 "all three bricks online after volume start force")
        # glustershd may still be attaching the restarted brick: ask again
        wait_for(lambda: d.cli("volume", "heal", "vmn").rc == 0, 60, "volume heal accepted")
        wait_for(lambda: heal_counts(d, "vmn") == [0, 0, 0], 90,
                 "volume heal info to show nothing pending")
        copies = [(b / "disk.img").read_bytes() for b in bricks]
        for i, copy in enumerate(copies):
            assert copy[MiB:2 * MiB] == part_a, f"brick {i} lacks the first write"
            assert copy[2 * MiB:3 * MiB] == part_b, f"brick {i} lacks the second write"
        assert copies[0] == copies[1] == copies[2]
