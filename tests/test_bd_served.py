"""A bd volume served by `glusterpy brick` and `glusterpy volfile-server`
processes, on a real volume group on loop devices.

* two gfapi clients: one rewrites an image while the other clones it;
* `glusterpy bd create|clone|snapshot|resize|delete` against the volume,
  and its answers to wrong input;
* the same through a FUSE mount: touch, truncate -s, ln, ln -s, rm;
* QEMU: qemu-img and qemu-io make and use a qcow2 and a raw image over
  gluster:// on LVs (interop).

The brick is protocol/server over features/locks over storage/bd over
storage/posix (the metadata directory), as a brick volfile for `volume
create NAME device lv HOST:/VG` would stack it.  Every process is ended by
pid, and the VG and loop devices removed, also when a test fails.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from glusterpy.gfapi import AsyncVolume

from test_bd_lvm import LoopVG, need_lvm

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]
VOL = "bdvol"
EXT = 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode}: "
                                 f"{log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout}s; see {log}")


def brick_volfile(vg: LoopVG, meta: Path) -> str:
    bd_opts = "".join(f'    option {k} "{v}"\n' for k, v in vg.options().items())
    return (f"volume {VOL}-posix\n    type storage/posix\n    option directory {meta}\n"
            f"end-volume\n\nvolume {VOL}-bd\n    type storage/bd\n{bd_opts}"
            f"    subvolumes {VOL}-posix\nend-volume\n\n"
            f"volume {VOL}-locks\n    type features/locks\n    subvolumes {VOL}-bd\n"
            f"end-volume\n\nvolume {VOL}-server\n    type protocol/server\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            f"    option auth.addr.{VOL}-locks.allow 127.0.0.1\n"
            f"    subvolumes {VOL}-locks\nend-volume\n")


CLIENT_VOLFILE = f"""volume {VOL}-client-0
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume {VOL}-locks
    option ping-timeout 10
end-volume
"""


class ServedBd:
    def __init__(self, base: Path, vg: LoopVG):
        self.base, self.vg = base, vg
        self.meta = base / "meta"
        self.meta.mkdir()
        vols = base / "vols"
        vols.mkdir()
        (vols / f"{VOL}.vol").write_text(CLIENT_VOLFILE)
        (base / "brick.vol").write_text(brick_volfile(vg, self.meta))
        self.vport, self.bport = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self._start("volfile-server", "--dir", str(vols), "--port", str(self.vport),
                    "--address", "127.0.0.1", log="volfile-server.log", port=self.vport)
        self._start("brick", "--volfile", str(base / "brick.vol"), "--port", str(self.bport),
                    "--volfile-server", f"127.0.0.1:{self.vport}", log="brick.log",
                    port=self.bport)

    def _start(self, *args: str, log: str, port: int) -> None:
        proc = subprocess.Popen([*GLUSTERPY, *args, "--log-file", str(self.base / log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        wait_listening(port, proc, self.base / log)

    def volume(self) -> AsyncVolume:
        return AsyncVolume.from_server("127.0.0.1", VOL, self.vport)

    def url(self, name: str) -> str:
        return f"gluster://127.0.0.1:{self.vport}/{VOL}/{name}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*GLUSTERPY, "bd", *args, "--server", f"127.0.0.1:{self.vport}"],
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need_lvm()
    base = tmp_path_factory.mktemp("bd-served")
    vg = LoopVG(base, size=96 << 20)
    try:
        srv = ServedBd(base, vg)
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        vg.destroy()


async def test_clone_while_another_client_writes(served):
    """Client A rewrites /src block by block, version after version; client
    B clones it meanwhile.  Each block of the clone is one whole version,
    the source ends with A's last, both LVs are in LVM's report."""
    block, blocks = 64 << 10, 64
    async with served.volume() as a, served.volume() as b:
        src = await a.open("/src", os.O_CREAT | os.O_RDWR)
        await src.ftruncate(block * blocks)
        last = [0] * blocks
        started, stop = trio.Event(), trio.Event()

        async def writer():
            v = 0
            while not stop.is_set():
                v = v % 250 + 1
                for i in range(blocks):
                    await src.pwrite(bytes([v]) * block, i * block)
                    last[i] = v
                started.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await started.wait()
            await b.link("/src", "/clone")
            stop.set()
        lvs = served.vg.lvs()
        assert lvs["src"] == lvs["clone"] == block * blocks
        async with await b.fopen("/clone") as f:
            clone = await f.read()
        assert len(clone) == block * blocks
        for i in range(blocks):
            chunk = clone[i * block:(i + 1) * block]
            assert chunk == bytes([chunk[0]]) * block and chunk[0], f"block {i} is torn"
        for i in range(blocks):
            assert await src.pread(1, i * block) == bytes([last[i]])
        await src.close()
        await a.unlink("/src")
        await b.unlink("/clone")
    assert "src" not in served.vg.lvs() and "clone" not in served.vg.lvs()


def test_bd_commands(served):
    vg = served.vg.name
    r = served.cli("create", f"{VOL}:/{vg}/cli1", "1M")
    assert r.returncode == 0, r.stderr
    assert served.vg.lvs()["cli1"] == 1 << 20 and "1048576 bytes" in r.stdout
    r = served.cli("clone", f"{VOL}:/{vg}/cli1", "cli2")
    assert r.returncode == 0, r.stderr
    assert served.vg.lvs()["cli2"] == 1 << 20
    r = served.cli("resize", f"{VOL}:/{vg}/cli2", "10k")
    assert r.returncode == 0, r.stderr      # nothing was written to it
    assert served.vg.lvs()["cli2"] == 3 * EXT
    r = served.cli("snapshot", f"{VOL}:/{vg}/cli1", "snap1", "64k")
    assert r.returncode == 0 and "snap1" in r.stdout, r.stderr
    assert served.vg.report().lvs["snap1"].origin == "cli1"
    # wrong input: each refused with its reason, nothing changed
    before = served.vg.lvs()
    for args, status, says in [
            (("create", f"{VOL}:/{vg}/cli1", "1M"), 1, "exists"),
            (("create", f"{VOL}:/{vg}/huge", "1T"), 1, "free space"),
            (("create", f"{VOL}:/{vg}/bad:name", "1M"), 2, "characters LVM does not allow"),
            (("create", f"{VOL}:/{vg}", "1M"), 2, "is not VOL:/VG/LV"),
            (("create", f"{VOL}:/{vg}/x", "lots"), 2, "is not a size"),
            (("create", f"{VOL}:/{vg}/x", "0"), 2, "more than 0"),
            (("create", f"{VOL}:/othervg/x", "1M"), 2, f"serves volume group {vg}"),
            (("create", f"nosuchvol:/{vg}/x", "1M"), 1, "nosuchvol"),
            (("clone", f"{VOL}:/{vg}/missing", "m2"), 1, "No such file"),
            (("delete", f"{VOL}:/{vg}/missing"), 1, "No such file"),
            (("delete", f"{VOL}:/{vg}/cli1"), 1, "has snapshots"),
            (("snapshot", f"{VOL}:/{vg}/snap1", "snap2", "64k"), 1, "Invalid argument"),
            (("snapshot", f"{VOL}:/{vg}/cli2", "snap3", "1T"), 1, "free")]:
        r = served.cli(*args)
        assert r.returncode == status and says in r.stderr, (args, r.returncode, r.stderr)
    assert served.vg.lvs() == before
    for name in ("snap1", "cli1", "cli2"):
        r = served.cli("delete", f"{VOL}:/{vg}/{name}")
        assert r.returncode == 0, r.stderr
    assert not {"snap1", "cli1", "cli2"} & set(served.vg.lvs())


@pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                    reason="needs /dev/fuse and fusermount3 (fuse3)")
def test_the_same_through_a_mount(served, tmp_path):
    """touch, truncate -s, ln, ln -s and rm on a `glusterpy mount` of the
    volume are create, resize, clone, snapshot and delete."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([*GLUSTERPY, "mount", f"127.0.0.1:{served.vport}:/{VOL}", str(mnt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

    def sh(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=mnt,
                              timeout=60)
    try:
        assert sh("touch img").returncode == 0
        assert "img" not in served.vg.lvs() and (mnt / "img").stat().st_size == 0
        assert sh("truncate -s 1M img").returncode == 0
        assert served.vg.lvs()["img"] == 1 << 20
        data = os.urandom(256 << 10)
        with open(mnt / "img", "r+b") as f:
            f.write(data)
        assert sh("ln img clone").returncode == 0
        assert served.vg.lvs()["clone"] == 1 << 20
        with open(mnt / "clone", "rb") as f:
            assert f.read(len(data)) == data
        # a snapshot (COW: 20% of img, option snapshot-size): the kernel
        # takes the new entry as the symbolic link it asked for, then sees
        # the LV it is at the next look (the bridge's _made_by_symlink)
        r = sh("ln -s img snap")
        assert r.returncode == 0, r.stderr
        assert served.vg.report().lvs["snap"].origin == "img"
        st = os.lstat(mnt / "snap")
        assert stat.S_ISREG(st.st_mode) and st.st_size == 1 << 20
        with pytest.raises(OSError) as no_link:
            os.readlink(mnt / "snap")
        assert no_link.value.errno == errno.EINVAL
        listed = sh("ls -l snap")
        assert listed.returncode == 0 and listed.stdout.startswith("-"), listed
        assert {e.name: e.is_file(follow_symlinks=False) for e in os.scandir(mnt)} == \
            {"img": True, "clone": True, "snap": True}
        with open(mnt / "img", "r+b") as f:
            f.write(bytes(64 << 10))
        with open(mnt / "snap", "rb") as f:
            assert f.read(len(data)) == data
        # writable, and the origin keeps its data
        with open(mnt / "snap", "r+b") as f:
            f.write(b"S" * 4096)
        with open(mnt / "snap", "rb") as f:
            assert f.read(8192) == b"S" * 4096 + data[4096:8192]
        with open(mnt / "img", "rb") as f:
            assert f.read(8192) == bytes(8192)
        # a second snapshot's name taken: EEXIST, and no LV made
        r = sh("ln -s img snap")
        assert r.returncode != 0 and "exists" in r.stderr, r.stderr
        r = sh("truncate -s 4k img")
        assert r.returncode != 0 and "Operation not permitted" in r.stderr
        r = sh("rm img")
        assert r.returncode != 0 and "busy" in r.stderr, r.stderr
        assert sh("rm snap clone img").returncode == 0
        assert not {"img", "clone", "snap"} & set(served.vg.lvs()) and os.listdir(mnt) == []
    finally:
        subprocess.run([*GLUSTERPY, "umount", str(mnt)], capture_output=True, timeout=60)


@pytest.mark.interop
def test_qemu_images_on_lvs(served, tmp_path):
    """qcow2 grows its file by writing past the end (each write grows the
    LV); raw is sized once by qemu-img's truncate."""
    for tool in ("qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")

    def run_all(commands):
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=tmp_path) for c in commands]
        outs = []
        for c, p in zip(commands, procs):
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, f"{' '.join(c)}: {out}"
            outs.append(out)
        return outs

    run_all([["qemu-img", "create", "-f", "qcow2", served.url("vm.qcow2"), "32M"],
             ["qemu-img", "create", "-f", "raw", served.url("vm.raw"), "8M"]])
    lvs = served.vg.lvs()
    assert "vm.qcow2" in lvs and lvs["vm.raw"] == 8 << 20
    q, r = run_all([["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M",
                     "-c", "read -P 0x5a 0 1M", served.url("vm.qcow2")],
                    ["qemu-io", "-f", "raw", "-c", "write -P 0xa5 1M 2M",
                     "-c", "read -P 0xa5 1M 2M", "-c", "read -P 0 0 1M", served.url("vm.raw")]])
    for out in (q, r):
        assert "Pattern verification failed" not in out and "error" not in out.lower(), out
    assert "wrote 1048576/1048576 bytes at offset 0" in q
    assert "read 2097152/2097152 bytes at offset 1048576" in r
    # the qcow2 image grew as qemu wrote: its LV holds the header and the data
    assert served.vg.lvs()["vm.qcow2"] > 1 << 20
    # read straight off the PVs: a qcow2 header (magic, virtual size at 24)
    # and the raw image's bytes (qemu-img info would cost another ten
    # seconds of libgfapi's glfs_fini)
    qcow = served.vg.read_lv("vm.qcow2")
    assert qcow[:4] == b"QFI\xfb" and int.from_bytes(qcow[24:32], "big") == 32 << 20
    raw = served.vg.read_lv("vm.raw")
    assert hashlib.sha256(raw).hexdigest() == hashlib.sha256(
        bytes(1 << 20) + b"\xa5" * (2 << 20) + bytes(5 << 20)).hexdigest()
