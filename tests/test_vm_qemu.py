"""QEMU's gluster driver (qemu-img, qemu-io: real libgfapi) against glusterpy
volumes given wrong or hostile input: it gets a clean error and the volume
is left as it was.

* a gluster:// URL naming a volume the daemon does not know, or an image
  the volume does not hold: QEMU's "Could not open" / "failed to connect",
  nothing created on the brick;
* a server that is not there (a closed port): the same, quickly;
* an image larger than the volume's free space (bricks on 32 MiB tmpfs):
  a thin image is made, as GlusterFS makes it, and the writes past the
  free space fail with ENOSPC while what was written before reads back;
  a preallocated one fails with "Could not preallocate data: No space left
  on device" and takes no space (QEMU's driver leaves the empty file it
  created first - GlusterFS 10 leaves the same);
* one WRITE larger than 16 MiB (QEMU sends up to 512 MiB in one call):
  the brick takes it rather than dropping the connection.

And a qcow2 image made by `glusterpy vm create-image` opens in QEMU over
gluster:// with cache=none and takes writes.

Every qemu-img/qemu-io run costs about 10 s in libgfapi's glfs_fini (the
same against GlusterFS 10's own bricks), so the scenarios run side by side,
each on a volume of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from test_glusterd_support import running_daemon, snapshot
from test_vm_cli import brick_state

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="bricks need trusted.* xattrs and tmpfs mounts (root)")]

TIMEOUT = 90


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")


def qemu(*cmd: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)
    # libgfapi's INFO lines ("io-stats translator unloaded") are noise here
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if " I [" not in line)
    return done


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens once the socket is closed


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "32m"):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run_side_by_side(scenarios: dict) -> None:
    """Run the scenario functions in threads; re-raise the first failure."""
    errors: dict[str, BaseException] = {}

    def run(name, fn):
        try:
            fn()
        except BaseException as e:
            errors[name] = e
    threads = [threading.Thread(target=run, args=item) for item in scenarios.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads), "a scenario did not finish"
    for name, e in errors.items():
        raise AssertionError(f"scenario {name!r} failed: {e}") from e


def test_qemu_gets_clean_errors_and_volumes_stay_unchanged(tmp_path):
    need("qemu-img", "qemu-io")
    with contextlib.ExitStack() as stack:
        full = stack.enter_context(small_filesystem(tmp_path / "full"))
        prealloc = stack.enter_context(small_filesystem(tmp_path / "prealloc"))
        thin = stack.enter_context(small_filesystem(tmp_path / "thin"))
        d = stack.enter_context(running_daemon(tmp_path / "wd"))
        bricks = {"vms": tmp_path / "vms", "big": tmp_path / "big", "full": full / "b",
                  "prealloc": prealloc / "b", "thin": thin / "b"}
        for name, brick in bricks.items():
            d.ok("volume", "create", name, f"127.0.0.1:{brick}", "force")
            d.ok("volume", "start", name)
        d.ok("vm", "create-image", "vms", "disk.img", "16M")
        d.ok("vm", "create-image", "big", "big.img", "64M")
        d.ok("vm", "create-image", "full", "thin.img", "1G")
        d.ok("vm", "create-image", "big", "made.qcow2", "8G", "--format", "qcow2")
        url = f"gluster://127.0.0.1:{d.port}"
        vms_before = brick_state(bricks["vms"])
        state_before = snapshot(d.workdir)

        def unknown_volume():
            for cmd in (["qemu-img", "info", f"{url}/nosuch/disk.img"],
                        ["qemu-img", "create", "-f", "qcow2", f"{url}/nosuch/new.qcow2", "1G"],
                        ["qemu-io", "-f", "raw", "-c", "read 0 4k", f"{url}/nosuch/disk.img"]):
                r = qemu(*cmd)
                assert r.returncode != 0, r
                assert "Gluster connection for volume nosuch" in r.stderr and \
                    "failed to connect" in r.stderr, r.stderr

        def unknown_image():
            r = qemu("qemu-img", "info", f"{url}/vms/missing.img")
            assert r.returncode == 1
            assert f"Could not open '{url}/vms/missing.img'" in r.stderr
            assert "No such file or directory" in r.stderr

        def image_in_a_missing_directory():
            r = qemu("qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", f"{url}/vms/gone/x.img")
            assert r.returncode == 1 and "No such file or directory" in r.stderr, r.stderr

        def unreachable_server():
            port = closed_port()
            for cmd in (["qemu-img", "info", f"gluster://127.0.0.1:{port}/vms/disk.img"],
                        ["qemu-img", "create", "-f", "raw",
                         f"gluster://127.0.0.1:{port}/vms/new.img", "1G"]):
                r = qemu(*cmd)
                assert r.returncode == 1, r
                assert f"failed on host 127.0.0.1 and port {port}" in r.stderr, r.stderr

        def writes_past_the_free_space():
            # a 1 GiB thin image on 32 MiB: 1 MiB writes until the space runs out
            free = free_bytes(full)
            writes = [f"write -P 0x{0x40 + i % 64:02x} {i}M 1M" for i in range(48)]
            r = qemu("qemu-io", "-f", "raw", *(a for w in writes for a in ("-c", w)),
                     "-c", "read -P 0x40 0 1M", "-c", "read -P 0x41 1M 1M", f"{url}/full/thin.img")
            out = r.stdout + r.stderr
            wrote = out.count("wrote 1048576/1048576 bytes")
            failed = [line for line in out.splitlines() if "failed" in line]
            assert 20 <= wrote < 48 and wrote * (1 << 20) <= free, out
            # the brick's ENOSPC reaches QEMU.  The client graph has
            # write-behind, as glusterd's has: QEMU's gluster driver then
            # closes the image after the first failed write or flush (it
            # cannot know what write-behind dropped), so what follows fails
            # with ENOMEDIUM - as on a GlusterFS volume
            assert failed and failed[0] == "write failed: No space left on device", failed
            assert all(f in ("write failed: No space left on device",
                             "write failed: No medium found",
                             "read failed: No medium found") for f in failed), failed
            assert "Pattern verification failed" not in out, out
            # what was acknowledged before the space ran out is on the brick
            with open(bricks["full"] / "thin.img", "rb") as f:
                assert f.read(1 << 20) == b"\x40" * (1 << 20)
                assert f.read(1 << 20) == b"\x41" * (1 << 20)

        def preallocation_past_the_free_space():
            free = free_bytes(prealloc)
            r = qemu("qemu-img", "create", "-f", "raw", "-o", "preallocation=falloc",
                     f"{url}/prealloc/fat.img", "64M")
            assert r.returncode == 1
            assert "Could not preallocate data: No space left on device" in r.stderr, r.stderr
            assert free_bytes(prealloc) == free
            left = bricks["prealloc"] / "fat.img"
            assert not left.exists() or (left.stat().st_size == 0 and left.stat().st_blocks == 0)

        def thin_qcow2_larger_than_the_free_space():
            # made, as GlusterFS makes it: only its metadata takes space
            r = qemu("qemu-img", "create", "-f", "qcow2", f"{url}/thin/thin.qcow2", "1G")
            assert r.returncode == 0, r.stderr
            assert (bricks["thin"] / "thin.qcow2").stat().st_blocks * 512 < 1 << 20

        def one_write_larger_than_16_mib():
            r = qemu("qemu-io", "-f", "raw", "-c", "write -P 0x6e 0 32M",
                     "-c", "read -P 0x6e 0 32M", f"{url}/big/big.img")
            assert r.returncode == 0 and "wrote 33554432/33554432" in r.stdout, r
            assert "Pattern verification failed" not in r.stdout

        def qcow2_made_by_create_image():
            # QEMU reads whole sectors with cache=none: the file must not end mid-sector
            r = qemu("qemu-io", "-t", "none", "-f", "qcow2", "-c", "write -P 0x2f 7G 192k",
                     "-c", "read -P 0x2f 7G 192k", "-c", "read -P 0 0 64k",
                     f"{url}/big/made.qcow2")
            assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r

        run_side_by_side({
            "qcow2 image made by glusterpy vm create-image": qcow2_made_by_create_image,
            "unknown volume": unknown_volume,
            "unknown image": unknown_image,
            "image in a missing directory": image_in_a_missing_directory,
            "unreachable server": unreachable_server,
            "writes past the free space": writes_past_the_free_space,
            "preallocation past the free space": preallocation_past_the_free_space,
            "thin qcow2 image larger than the free space": thin_qcow2_larger_than_the_free_space,
            "one write larger than 16 MiB": one_write_larger_than_16_mib,
        })

        assert brick_state(bricks["vms"]) == vms_before
        assert snapshot(d.workdir) == state_before
        # every brick still serves (none was dropped by what QEMU sent)
        status = d.ok("volume", "status", "all", "--json").json()["volumes"]
        assert all(b["online"] for v in status for b in v["bricks"]), status
