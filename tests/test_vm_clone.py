"""VM image clones and snapshots by copy_file_range (issue 21): gfapi's
copy_file and `glusterpy vm clone|snapshot|create-image --backing` against
a glusterpyd serving a distribute + replicate 3 volume (2 x 3 bricks, each
its own process).

The clone must equal the source, keep its holes on every brick, and be
made by the bricks: the client's bytes on the wire (TCP_INFO of its
protocol/client connections) stay far below the image's data.  QEMU's own
gluster driver (`qemu-img map`/`info`/`convert`, `qemu-io discard` over
gluster://) sees the holes, keeps them in a conversion, frees a discarded
range on the bricks and opens the overlay's backing image.  On an XFS
brick (a loop device, mkfs.xfs -m reflink=1) a 1 GiB clone is a reflink:
under a second, extents shared (filefrag).  `cp` on a FUSE mount of a
2-brick distribute volume, to a name hashing to the other brick, is copied
by the source's brick (the bricks' io-stats see no data), and a fresh mount
and a rebalance handle the clone's linkto file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest
import trio

from glusterpy.gfapi import AsyncVolume
import test_distribute as dist
from test_glusterd_support import running_daemon, wait_for
from xlators.protocol.server import _tcp_bytes

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")
needs_fuse = pytest.mark.skipif(shutil.which("fusermount3") is None or
                                not os.path.exists("/dev/fuse"), reason="needs FUSE (fuse3)")

MB = 1 << 20
#: the source image: 64 MiB, data in three places, holes between
EXTENTS = ((0, 4 * MB), (20 * MB, 2 * MB), (60 * MB, 4 * MB))
SIZE = 64 * MB


def wire_bytes_sent(vol: AsyncVolume) -> int:
    """What the client's protocol/client connections sent (and had acked)."""
    total = 0
    for x in vol.graph.by_name.values():
        ep = getattr(x, "_endpoint", None)
        if type(x).__module__ == "xlators.protocol.client" and ep is not None:
            sent = _tcp_bytes(ep.stream)[1]
            assert sent is not None
            total += sent
    return total


def data_extents(path) -> list[tuple[int, int]]:
    out, pos = [], 0
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, pos - start))
    return out


def holders(bricks, name) -> list:
    """The bricks holding `name`'s data (not a linkto file)."""
    return [b for b in bricks if (b / name).exists() and
            "trusted.glusterfs.dht.linkto" not in os.listxattr(b / name)]


def test_qcow2_overlay_header_is_what_qemu_img_reads(tmp_path):
    """An overlay's header, written in-process, read back by qemu-img: its
    backing file and format; qemu-img check finds no fault."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    from glusterpy import vm
    base = tmp_path / "base.img"
    base.write_bytes(b"")
    os.truncate(base, SIZE)
    for name, fmt in ((str(base), "raw"), (str(base), None)):
        meta = vm.qcow2_metadata(SIZE, name, fmt)
        path = tmp_path / "overlay.qcow2"
        path.write_bytes(meta.ljust(vm.qcow2_file_length(meta), b"\0"))
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U",
                                          str(path)], check=True, capture_output=True,
                                         text=True).stdout)
        assert info["backing-filename"] == name and info["virtual-size"] == SIZE
        assert info.get("backing-filename-format") == fmt
        done = subprocess.run(["qemu-img", "check", str(path)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    for bad in ("", "x" * 1024, "a\0b"):
        with pytest.raises(vm.VmError, match="backing file name"):
            vm.qcow2_metadata(SIZE, bad, "raw")
    with pytest.raises(vm.VmError, match="backing format"):
        vm.qcow2_metadata(SIZE, "base.img", "vmdk")


@needs_root
def test_clone_by_the_bricks_over_distribute_replicate(tmp_path):
    bricks = [tmp_path / f"b{i}" for i in range(6)]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vms", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "vms")
        pieces = {off: os.urandom(n) for off, n in EXTENTS}
        moved_clone: list[str] = []

        async def main():
            async with AsyncVolume.from_server("127.0.0.1", "vms", d.port) as vol:
                async with await vol.fopen("/base.img", "w") as f:
                    for off, data in pieces.items():
                        await f.pwrite(data, off)
                    await f.ftruncate(SIZE)
                before = wire_bytes_sent(vol)
                seen = []
                copied = await vol.copy_file("/base.img", "/clone.img",
                                             progress=lambda done, total: seen.append(done),
                                             chunk=16 * MB)
                assert copied == SIZE and seen == [16 * MB, 32 * MB, 48 * MB, 64 * MB]
                # more names: some hash to the other replica set, and are
                # still created beside the source
                for i in range(4):
                    await vol.copy_file("/base.img", f"/c{i}.img")
                sent = wire_bytes_sent(vol) - before
                # requests only: far below the 10 MiB of data the image holds
                assert sent < 5 * 256 * 1024, sent
                # copy_file_range into an empty file made elsewhere (as `cp`
                # makes it): it moves to the source's replica set first
                away = None
                for i in range(40):
                    async with await vol.fopen(f"/cp{i}.img", "w"):
                        pass
                    if holders(bricks, f"cp{i}.img") != holders(bricks, "base.img"):
                        away = f"/cp{i}.img"
                        break
                assert away is not None
                before = wire_bytes_sent(vol)
                async with await vol.open("/base.img", os.O_RDONLY) as src, \
                        await vol.open(away, os.O_WRONLY) as dst:
                    assert await src.copy_file_range(dst, SIZE, 0, 0) == SIZE
                assert wire_bytes_sent(vol) - before < 256 * 1024
                moved_clone.append(away)
                async with await vol.fopen("/clone.img", "r") as f:
                    for off, data in pieces.items():
                        assert await f.pread(len(data), off) == data
                    assert await f.pread(MB, 10 * MB) == bytes(MB)
                    assert (await f.fstat()).st_size == SIZE
                with pytest.raises(FileExistsError):
                    await vol.copy_file("/base.img", "/clone.img")
                with pytest.raises(FileNotFoundError):
                    await vol.copy_file("/nosuch.img", "/other.img")
                assert not await vol.exists("/other.img")
        trio.run(main)

        # the clone's data is on the source's replica set, holes kept on each copy
        src_at, clone_at = holders(bricks, "base.img"), holders(bricks, "clone.img")
        assert len(src_at) == 3 and clone_at == src_at
        assert all(holders(bricks, f"c{i}.img") == src_at for i in range(4))
        away = moved_clone[0].lstrip("/")
        assert holders(bricks, away) == src_at
        for b in src_at:
            assert data_extents(b / away) == list(EXTENTS)
        # a linkto file on each brick of the set its name hashes to
        assert sum(1 for b in bricks if b not in src_at and (b / away).exists() and
                   "trusted.glusterfs.dht.linkto" in os.listxattr(b / away)) == 3
        for b in clone_at:
            assert (b / "clone.img").read_bytes() == (b / "base.img").read_bytes()
            assert data_extents(b / "clone.img") == list(EXTENTS)

        # the CLI: a clone, a read-only snapshot, an overlay
        r = d.ok("vm", "clone", "vms", "base.img", "vm1.img")
        assert r.out.startswith(f"created gluster://127.0.0.1:{d.port}/vms/vm1.img: clone of "
                                "base.img, 64 MiB")
        r = d.ok("vm", "snapshot", "vms", "vm1.img", "vm1-snap.img")
        assert "read-only snapshot of vm1.img" in r.out
        for b in holders(bricks, "vm1-snap.img"):
            assert stat.S_IMODE((b / "vm1-snap.img").stat().st_mode) == 0o400
            assert data_extents(b / "vm1-snap.img") == list(EXTENTS)
        r = d.ok("vm", "create-image", "vms", "vm2.qcow2", "--backing", "base.img")
        base_url = f"gluster://127.0.0.1:{d.port}/vms/base.img"
        assert r.out.strip() == (f"created gluster://127.0.0.1:{d.port}/vms/vm2.qcow2: qcow2, "
                                 f"64 MiB, over {base_url}")

        # refusals: clear, and nothing changes
        for args, rc, message in (
                (("vm", "clone", "vms", "base.img", "vm1.img"), 1, "already exists"),
                (("vm", "clone", "vms", "nosuch.img", "x.img"), 1, "does not exist"),
                (("vm", "clone", "vms", "base.img", "nodir/x.img"), 1, "does not exist"),
                (("vm", "clone", "vms", "base.img", "/base.img"), 2, "the same image"),
                (("vm", "clone", "vms", "base.img", "../x.img"), 2, "not an image path"),
                (("vm", "create-image", "vms", "x.qcow2", "--backing", "base.img",
                  "--format", "raw"), 2, "only a qcow2 image"),
                (("vm", "create-image", "vms", "x.qcow2", "1M", "--backing", "base.img"), 1,
                 "smaller than the backing image"),
                (("vm", "create-image", "vms", "x.qcow2", "--backing", "base.img",
                  "--backing-format", "qcow2"), 1, "not a qcow2 image")):
            r = d.cli(*args)
            assert (r.rc, r.out) == (rc, ""), (args, r)
            assert message in r.err, (args, r.err)
        for b in bricks:
            assert not (b / "x.img").exists() and not (b / "x.qcow2").exists()

        if shutil.which("qemu-img"):
            url = f"gluster://127.0.0.1:{d.port}/vms"
            done = subprocess.run(["qemu-img", "map", "--output=json", f"{url}/vm1.img"],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            data = [(e["start"], e["length"]) for e in json.loads(done.stdout) if e["data"]]
            assert data == list(EXTENTS)
            done = subprocess.run(["qemu-img", "info", "--output=json", f"{url}/vm2.qcow2"],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            info = json.loads(done.stdout)
            assert (info["backing-filename"], info["backing-filename-format"],
                    info["virtual-size"]) == (base_url, "raw", SIZE)
            # qemu-img convert over gluster:// keeps the holes too (block status
            # from SEEK_DATA/SEEK_HOLE, zeros not written)
            done = subprocess.run(["qemu-img", "convert", "-O", "raw", f"{url}/vm1.img",
                                   f"{url}/conv.img"],
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stderr
            for b in holders(bricks, "conv.img"):
                assert data_extents(b / "conv.img") == list(EXTENTS)
            # a guest's discard (QEMU's gluster driver: glfs_discard) frees the
            # clone's blocks on the bricks, and reads back as zeros
            done = subprocess.run(["qemu-io", "-f", "raw", "-d", "unmap", "-c",
                                   "discard 0 4M", f"{url}/vm1.img"],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and "discard 4194304" in done.stdout, done.stdout + done.stderr
            for b in holders(bricks, "vm1.img"):
                assert data_extents(b / "vm1.img") == list(EXTENTS[1:])
                assert (b / "vm1.img").read_bytes()[:4 * MB] == bytes(4 * MB)
            # the guest's view through the overlay is the backing image's
            done = subprocess.run(["qemu-img", "compare", f"{url}/vm2.qcow2",
                                   f"{url}/base.img"], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr


# -- distribute: `cp` on a mount, the clone's name on another brick -------------------


def brick_data_moved(d, vol: str) -> int:
    """Bytes the bricks' io-stats saw read or written by clients: what
    crossed the wire between the client and the bricks (a brick's own
    copy_file_range happens below its io-stats and is not counted)."""
    doc = d.ok("volume", "profile", vol, "info", "--json").json()
    return sum(b["report"]["cumulative"]["data_read"] + b["report"]["cumulative"]["data_written"]
               for b in doc["bricks"])


@contextlib.contextmanager
def fuse_mounted(port: int, vol: str, mnt, log):
    mnt.mkdir()
    subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "mount", "-o",
                    f"log-file={log}", f"127.0.0.1:{port}:/{vol}", str(mnt)],
                   check=True, timeout=60)
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        wait_for(lambda: not os.path.ismount(mnt), what="unmount")


def digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MB):
            h.update(block)
    return h.hexdigest()


@needs_root
@needs_fuse
def test_cp_to_a_name_on_another_brick_is_copied_by_the_source_brick(tmp_path):
    """A 256 MiB image copied by coreutils' cp on a FUSE mount of a 2-brick
    distribute volume, to a name that hashes to the other brick: the empty
    new file moves beside the source (a linkto file stays where the name
    hashes) and the source's brick copies - the bricks see next to no data
    from the client.  A fresh mount finds, reads and removes the clone; a
    rebalance in between moves it to its hashed brick, intact."""
    bricks = [tmp_path / f"b{i}" for i in range(2)]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "dv", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "dv")
        d.ok("volume", "profile", "dv", "start")
        with fuse_mounted(d.port, "dv", tmp_path / "m1", tmp_path / "m1.log") as mnt:
            with open(mnt / "base.img", "wb") as f:
                for _ in range(256):
                    f.write(os.urandom(MB))
            home = dist.hashed_brick(bricks, "", "base.img")
            name = next(n for n in (f"clone{i}.img" for i in range(100))
                        if dist.hashed_brick(bricks, "", n) != home)
            before = brick_data_moved(d, "dv")
            subprocess.run(["cp", str(mnt / "base.img"), str(mnt / name)], check=True,
                           timeout=300)
            moved = brick_data_moved(d, "dv") - before
            assert moved < MB, moved
            assert os.stat(mnt / name).st_size == 256 * MB
        src = bricks[home] / "base.img"
        assert holders(bricks, name) == [bricks[home]]
        assert dist.is_linkto(bricks[1 - home] / name)
        assert digest(bricks[home] / name) == digest(src)

        # a fresh mount: lookup, stat, read
        with fuse_mounted(d.port, "dv", tmp_path / "m2", tmp_path / "m2.log") as mnt:
            assert os.stat(mnt / name).st_size == 256 * MB
            assert name in os.listdir(mnt)
            assert digest(mnt / name) == digest(src)

        # rebalance puts the clone's data where its name hashes, intact
        d.ok("volume", "rebalance", "dv", "start", "--watch")
        assert holders(bricks, name) == [bricks[1 - home]]
        assert not (bricks[home] / name).exists()
        assert digest(bricks[1 - home] / name) == digest(src)

        # and a fresh mount reads it there and removes it
        with fuse_mounted(d.port, "dv", tmp_path / "m3", tmp_path / "m3.log") as mnt:
            assert digest(mnt / name) == digest(src)
            os.unlink(mnt / name)
            assert not (mnt / name).exists()
        assert not any((b / name).exists() for b in bricks)


# -- replicate: a brick killed during a clone ----------------------------------------


@needs_root
def test_a_brick_killed_during_a_replicated_clone_leaves_a_whole_clone_or_none(tmp_path):
    """gfapi's copy_file (what `vm clone` runs) of a 256 MiB image on a
    replica 3 volume; one brick process is SIGKILLed while its copy of the
    clone is partly written.  The copy either fails (and the clone is
    removed) or completes on the other two; after the brick is back and
    heal has run, every brick has the whole clone or none has any."""
    import signal
    from test_heal_cli import all_online, brick_rows, healed
    total = 256 * MB
    bricks = [tmp_path / f"r{i}" for i in range(3)]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "rv", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "rv")
        victim = brick_rows(d, "rv")[1]["pid"]
        killed_at: list[int] = []

        def kill_midway(stop: threading.Event) -> None:
            # the victim's clone partly written (40 MiB in, 40 MiB short): kill its brick
            target = bricks[1] / "clone.img"
            while not stop.is_set():
                try:
                    held = os.stat(target).st_blocks * 512
                except FileNotFoundError:
                    held = 0
                if 40 * MB < held < total - 40 * MB:
                    os.kill(victim, signal.SIGKILL)
                    killed_at.append(held)
                    return
                time.sleep(0.0005)

        outcome: list[object] = []

        async def main():
            async with AsyncVolume.from_server("127.0.0.1", "rv", d.port) as vol:
                async with await vol.fopen("/base.img", "w") as f:
                    for _ in range(total // (16 * MB)):
                        await f.write(os.urandom(16 * MB))
                stop = threading.Event()
                watcher = threading.Thread(target=kill_midway, args=(stop,))
                watcher.start()
                try:
                    outcome.append(await vol.copy_file("/base.img", "/clone.img",
                                                       chunk=16 * MB))
                except OSError as e:
                    outcome.append(e)
                finally:
                    stop.set()
                    await trio.to_thread.run_sync(watcher.join)
        trio.run(main)
        assert killed_at, "the brick was not killed during the copy"
        d.ok("volume", "start", "rv", "force")
        wait_for(lambda: all_online(d, "rv"), timeout=60, what="the brick back")
        # the self-heal daemon sweeps when the brick comes back; asked again
        # until it is connected to every brick
        wait_for(lambda: d.cli("volume", "heal", "rv").rc == 0 and healed(d, "rv"),
                 timeout=180, interval=1, what="heal")
        source = digest(bricks[0] / "base.img")
        if outcome[0] == total:
            assert [digest(b / "clone.img") for b in bricks] == [source] * 3
        else:
            assert isinstance(outcome[0], OSError), outcome
            assert not any((b / "clone.img").exists() for b in bricks)


# -- an XFS brick: reflinks --------------------------------------------------------------


@pytest.fixture
def xfs_dir(tmp_path):
    """An XFS filesystem with reflink=1 on a loop device, mounted; all of it
    undone afterwards."""
    for tool in ("mkfs.xfs", "losetup", "filefrag"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    image, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(image, "wb") as f:
        f.truncate(2 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        mnt.mkdir()
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def shared_extents(path) -> int:
    """How many of the file's extents filefrag -v flags as shared."""
    out = subprocess.run(["filefrag", "-v", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return sum(1 for line in out.splitlines() if "shared" in line.split(":")[-1])


@needs_root
def test_clone_of_a_1gib_image_on_xfs_is_a_reflink(tmp_path, xfs_dir):
    brick = xfs_dir / "brick"
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "xv", f"127.0.0.1:{brick}")
        d.ok("volume", "start", "xv")
        extents = [(i * 128 * MB, 16 * MB) for i in range(8)]   # 128 MiB of data in 1 GiB

        async def main():
            async with AsyncVolume.from_server("127.0.0.1", "xv", d.port) as vol:
                async with await vol.fopen("/base.img", "w") as f:
                    block = os.urandom(MB)
                    for off, n in extents:
                        for k in range(0, n, MB):
                            await f.pwrite(block, off + k)
                    await f.ftruncate(1 << 30)
                    await f.fsync()
                started = trio.current_time()
                assert await vol.copy_file("/base.img", "/clone.img") == 1 << 30
                return trio.current_time() - started
        seconds = trio.run(main)
        assert seconds < 1.0, seconds
        assert (brick / "clone.img").read_bytes() == (brick / "base.img").read_bytes()
        assert data_extents(brick / "clone.img") == extents
        assert shared_extents(brick / "clone.img") >= len(extents)
        assert shared_extents(brick / "base.img") >= len(extents)

        # and through the CLI
        r = d.ok("vm", "clone", "xv", "base.img", "vm1.img")
        assert "clone of base.img, 1 GiB" in r.out
        assert shared_extents(brick / "vm1.img") >= len(extents)
        assert data_extents(brick / "vm1.img") == extents


def test_progress_bar_redraws_one_line(capsys):
    from glusterpy.cli.vm_cmd import _ProgressBar
    bar = _ProgressBar()
    bar.end()                       # nothing drawn, nothing ended
    assert capsys.readouterr().err == ""
    bar.show(256 * MB, 1024 * MB)
    bar.show(1024 * MB, 1024 * MB)
    bar.end()
    err = capsys.readouterr().err
    first, second = err.split("\r")[1:]
    assert first.startswith("[" + "#" * 7 + "-" * 23 + "]  25%  256 MiB of 1 GiB")
    assert second.startswith("[" + "#" * 30 + "] 100%  1 GiB of 1 GiB") and err.endswith("\n")
