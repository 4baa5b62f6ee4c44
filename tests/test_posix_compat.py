"""storage/posix against GlusterFS 10 itself: bricks GlusterFS wrote are
served by our posix, and bricks our posix wrote are served by GlusterFS.

Two kinds of evidence:

* the sample bricks in ../shared/glusterfs10-samples (replica 3 after a heal,
  distribute 3 with linkto files), as glusterd 10.3 left them;
* a private glusterd (Debian's glusterfs-server 10.3) started here, with a
  FUSE mount, writing a brick for us and serving one we wrote.  glusterd
  always listens on port 24007, so these tests take a lock file shared by
  every glusterpy test that starts one, and clean up every daemon, volume
  and mount they started, also on failure.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
import trio

from glusterpy.graph import Graph

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Caller, Fd, FopError, Loc
from xlators.storage.posix.handles import gfid2path_key

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "glusterfs10-samples" / "bricks"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/glusterfs10-samples/bricks")
VOLFILES = SAMPLES.parent / "volfiles"
VOLUME_ID_KEY = "trusted.glusterfs.volume-id"


def brick_posix_section(volume: str, brick_name: str, directory: Path) -> str:
    """The storage/posix volume of the brick volfile glusterd 10.3 wrote for
    `brick_name`, served from `directory` instead of /srv/<brick_name>."""
    text = (VOLFILES / f"{volume}.vm.srv-{brick_name}.vol").read_text()
    section = re.search(r"^volume \S+-posix\n.*?^end-volume\n", text, re.S | re.M).group(0)
    return section.replace(f"option directory /srv/{brick_name}", f"option directory {directory}")


def disk_xattrs(path) -> dict:
    return {k: os.getxattr(path, k, follow_symlinks=False)
            for k in os.listxattr(path, follow_symlinks=False)}


def mdata_times(raw: bytes) -> tuple[int, int, int]:
    _, _, cs, cn, ms, mn, as_, an = struct.unpack(">BQqQqQqQ", raw)
    return cs * 10**9 + cn, ms * 10**9 + mn, as_ * 10**9 + an


def handle(brick, gfid) -> Path:
    g = bytes(gfid)
    return Path(brick) / ".glusterfs" / f"{g[0]:02x}" / f"{g[1]:02x}" / str(GFID(g))


def tree_snapshot(brick) -> dict:
    """Names, modes, sizes, mtimes, contents and xattrs of a brick outside
    .glusterfs (what a reader must not change)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(brick):
        if os.path.samefile(dirpath, brick) and ".glusterfs" in dirnames:
            dirnames.remove(".glusterfs")
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            content = open(p, "rb").read() if stat.S_ISREG(s.st_mode) else None
            out[os.path.relpath(p, brick)] = (s.st_mode, s.st_size, s.st_mtime_ns, s.st_nlink,
                                              tuple(sorted(disk_xattrs(p).items())), content)
    return out


async def walk(top, loc: Loc, path: str = ""):
    """(path, parent gfid, Dirent) for every entry below loc, via readdirp."""
    fd = Fd(gfid=loc.gfid, is_dir=True)
    await top.opendir(loc, fd, None)
    try:
        offset, entries = 0, []
        while True:
            batch = (await top.readdirp(fd, 64 * 1024, offset, None)).entries
            if not batch:
                break
            entries.extend(batch)
            offset = batch[-1].off
    finally:
        await top.releasedir(fd, None)
    for ent in entries:
        if ent.name in (".", ".."):
            continue
        yield f"{path}/{ent.name}", loc.gfid, ent
        if ent.iatt.is_dir:
            async for item in walk(top, Loc(path=f"{path}/{ent.name}", gfid=ent.iatt.gfid),
                                   f"{path}/{ent.name}"):
                yield item


# -- the sample bricks GlusterFS 10 left ------------------------------------------

@pytest.fixture(scope="module")
def sample_bricks(tmp_path_factory):
    tarballs = sorted(SAMPLES.glob("*.tar.gz"))
    if not tarballs:
        pytest.skip(f"no sample bricks in {SAMPLES}")
    if os.geteuid() != 0:
        pytest.skip("extracting trusted.* xattrs from the samples needs root")
    base = tmp_path_factory.mktemp("samples")
    for tarball in tarballs:
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", str(tarball),
                        "-C", str(base)], check=True)
    return {p.name: p for p in sorted(base.iterdir()) if p.is_dir()}


@pytest.mark.parametrize("name", ["r1", "r2", "r3", "d1", "d2", "d3"])
async def test_glusterfs10_sample_bricks_read_back(sample_bricks, name):
    brick = sample_bricks[name]
    before = tree_snapshot(brick)
    # GlusterFS's own brick volfile (volume-id, shared-brick-count, fips-mode)
    graph = Graph.from_text(brick_posix_section("rep3" if name.startswith("r") else "dist3",
                                                name, brick))
    assert graph.top.opts.fips_mode_rchecksum and graph.top.opts.shared_brick_count == 3
    seen = 0
    async with graph.running():
        top = graph.top
        root = await top.lookup(Loc.root(), {"trusted.glusterfs.dht": 0})
        assert root.iatt.gfid == ROOT_GFID
        if name.startswith("d"):
            assert root.xdata["trusted.glusterfs.dht"] == \
                os.getxattr(brick, "trusted.glusterfs.dht")
        async for path, pgfid, ent in walk(top, Loc.root()):
            seen += 1
            disk = brick / path.lstrip("/")
            st = os.lstat(disk)
            x = disk_xattrs(disk)
            ia = ent.iatt
            assert ia.gfid == GFID(x["trusted.gfid"]), path
            assert (ia.mode, ia.uid, ia.gid, ia.size) == \
                (st.st_mode, st.st_uid, st.st_gid, st.st_size), path
            if "trusted.glusterfs.mdata" in x:      # GlusterFS 10's times, not the backend's
                assert (ia.ctime_ns, ia.mtime_ns, ia.atime_ns) == \
                    mdata_times(x["trusted.glusterfs.mdata"]), path
            h = handle(brick, ia.gfid)
            if ia.is_dir:
                assert os.readlink(h).endswith(f"/{pgfid}/{ent.name}"), path
            else:
                assert os.stat(h).st_ino == st.st_ino and ia.nlink == st.st_nlink - 1, path
                # our gfid2path hash names the very key GlusterFS wrote
                assert gfid2path_key(pgfid, ent.name) in x, path
            # every way of naming it agrees
            named = await top.lookup(Loc(pargfid=pgfid, name=ent.name), {"trusted.afr.*": 0})
            nameless = await top.lookup(Loc(gfid=ia.gfid), None)
            assert named.iatt.gfid == nameless.iatt.gfid == ia.gfid
            afr = {k: v for k, v in x.items() if k.startswith("trusted.afr.")}
            assert (named.xdata or {}) == afr, path
            if stat.S_ISREG(st.st_mode):
                fd = Fd(gfid=ia.gfid)
                data = bytes((await top.readv(fd, 1 << 20, 0, 0, None)).data) if st.st_size \
                    else b""
                await top.release(fd, None)
                assert data == disk.read_bytes(), path
                if st.st_mode & 0o7777 == stat.S_ISVTX:     # distribute's linkto files
                    linkto = await top.getxattr(Loc(gfid=ia.gfid), "trusted.glusterfs.dht.linkto",
                                                None)
                    assert linkto.dict["trusted.glusterfs.dht.linkto"].endswith(b"\0")
                paths = (await top.getxattr(Loc(gfid=ia.gfid), "glusterfs.gfidtopath",
                                            None)).dict["glusterfs.gfidtopath"]
                assert path in paths.split(":")
        names = {e.name for e in (await top.readdir(Fd(gfid=ROOT_GFID, is_dir=True), 1 << 16, 0,
                                                    None)).entries}
        assert ".glusterfs" not in names
    assert seen >= 10
    assert tree_snapshot(brick) == before        # reading wrote nothing


async def test_sample_brick_of_another_volume_is_refused(sample_bricks, posix_graph):
    with pytest.raises(BaseException) as e:
        async with posix_graph(sample_bricks["r1"], volume_id=uuid.uuid4()):
            pass
    leaf = e.value
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, FopError) and leaf.errno == errno.EEXIST
    assert "7872a669-dc65-4f0c-9894-cdb84af9e503" in leaf.message


async def test_sample_brick_takes_new_writes_in_the_same_layout(sample_bricks, posix_graph,
                                                                tmp_path):
    brick = tmp_path / "copy"
    subprocess.run(["cp", "-a", "--preserve=all", str(sample_bricks["r2"]), str(brick)],
                   check=True)
    volume_id = uuid.UUID(bytes=os.getxattr(brick, VOLUME_ID_KEY))
    async with posix_graph(brick, volume_id=volume_id) as top:
        keep = await top.lookup(Loc(path="/keep"), None)
        f1 = await top.lookup(Loc(pargfid=keep.iatt.gfid, name="f1"), None)
        fd = Fd(gfid=f1.iatt.gfid, flags=os.O_RDWR)
        w = await top.writev(fd, b"appended by glusterpy\n", f1.iatt.size, 0, None)
        await top.release(fd, None)
        assert w.postbuf.mtime_ns > f1.iatt.mtime_ns
        g = GFID.random()
        await top.mkdir(Loc(pargfid=keep.iatt.gfid, name="new-dir"), 0o755, 0, {"gfid-req": g})
        await top.rename(Loc(pargfid=keep.iatt.gfid, name="new-dir"),
                         Loc(pargfid=ROOT_GFID, name="moved-dir"), None)
    assert os.readlink(handle(brick, g)) == f"../../00/00/{ROOT_GFID}/moved-dir"
    assert (brick / "keep" / "f1").read_bytes().endswith(b"appended by glusterpy\n")
    mt = mdata_times(os.getxattr(brick / "keep" / "f1", "trusted.glusterfs.mdata"))[1]
    assert mt == w.postbuf.mtime_ns


def mount_gfid(path) -> GFID:
    return GFID(os.getxattr(path, "glusterfs.gfid.string",
                            follow_symlinks=False).decode().strip("\0"))


@pytest.mark.interop
async def test_glusterfs10_writes_and_our_posix_reads(glusterd, posix_graph, tmp_path):
    brick, mnt = tmp_path / "gf-brick", tmp_path / "mnt"
    brick.mkdir()
    vol = await trio.to_thread.run_sync(glusterd.create_volume, brick)
    await trio.to_thread.run_sync(glusterd.mount, vol, mnt)
    payload = os.urandom(300_000)
    try:
        (mnt / "dir").mkdir(mode=0o750)
        os.chmod(mnt / "dir", 0o750)
        (mnt / "dir" / "big").write_bytes(payload)
        (mnt / "small").write_bytes(b"hello from glusterfs\n")
        os.chmod(mnt / "small", 0o640)
        os.chown(mnt / "small", 1234, 5678)
        os.symlink("/etc/passwd", mnt / "abs-link")
        os.symlink("dir/big", mnt / "rel-link")
        os.link(mnt / "small", mnt / "dir" / "hard")
        os.setxattr(mnt / "small", "user.colour", b"blue")
        os.mkfifo(mnt / "fifo", 0o600)
        (mnt / "empty-dir").mkdir()
        names = ["dir", "dir/big", "small", "abs-link", "rel-link", "dir/hard", "fifo",
                 "empty-dir"]
        seen = {}
        for name in names:
            s = os.lstat(mnt / name)
            seen[name] = (mount_gfid(mnt / name), s.st_mode, s.st_uid, s.st_gid, s.st_size,
                          s.st_mtime_ns)
    finally:
        await trio.to_thread.run_sync(glusterd.umount, mnt)
    volume_id = glusterd.volume_id(vol)
    await trio.to_thread.run_sync(glusterd.stop_volume, vol)

    async with posix_graph(brick, volume_id=volume_id) as top:
        for name, (gfid, mode, uid, gid, size, mtime_ns) in seen.items():
            ia = (await top.lookup(Loc(path="/" + name), None)).iatt
            assert ia.gfid == gfid, name
            assert (ia.mode, ia.uid, ia.gid, ia.size) == (mode, uid, gid, size), name
            assert ia.mtime_ns == mtime_ns, name
        big = (await top.lookup(Loc(path="/dir/big"), None)).iatt
        fd = Fd(gfid=big.gfid)
        assert bytes((await top.readv(fd, 1 << 20, 0, 0, None)).data) == payload
        await top.release(fd, None)
        small = seen["small"][0]
        assert (await top.stat(Loc(gfid=small), None)).iatt.nlink == 2
        assert seen["dir/hard"][0] == small
        assert (await top.getxattr(Loc(gfid=small), "user.colour", None)).dict == \
            {"user.colour": b"blue"}
        assert (await top.readlink(Loc(gfid=seen["abs-link"][0]), 4096, None)).path == \
            "/etc/passwd"
        assert (await top.readlink(Loc(gfid=seen["rel-link"][0]), 4096, None)).path == "dir/big"
        assert stat.S_ISFIFO((await top.stat(Loc(gfid=seen["fifo"][0]), None)).iatt.mode)


@pytest.mark.interop
async def test_our_posix_writes_and_glusterfs10_serves(glusterd, posix_graph, tmp_path):
    brick, mnt = tmp_path / "our-brick", tmp_path / "mnt"
    brick.mkdir()
    payload = os.urandom(200_000)
    made = {}
    async with posix_graph(brick) as top:
        d = await top.mkdir(Loc(pargfid=ROOT_GFID, name="dir"), 0o2750, 0, None)
        made["dir"] = d.iatt.gfid
        fd = Fd()
        token = fops.caller.set(Caller(uid=4321, gid=8765))
        try:
            c = await top.create(Loc(pargfid=d.iatt.gfid, name="data"), 0, 0o640, 0, fd, None)
        finally:
            fops.caller.reset(token)
        await top.writev(fd, payload, 0, 0, None)
        await top.fsetxattr(fd, {"user.origin": b"glusterpy"}, 0, None)
        await top.release(fd, None)
        made["dir/data"] = c.iatt.gfid
        s = await top.symlink("/etc/hostname", Loc(pargfid=ROOT_GFID, name="abs-link"), 0,
                              None)
        made["abs-link"] = s.iatt.gfid
        await top.link(Loc(gfid=c.iatt.gfid), Loc(pargfid=ROOT_GFID, name="hard"), None)
        made["hard"] = c.iatt.gfid
        n = await top.mknod(Loc(pargfid=ROOT_GFID, name="fifo"), stat.S_IFIFO | 0o600, 0, 0,
                            None)
        made["fifo"] = n.iatt.gfid
        e = await top.mkdir(Loc(pargfid=d.iatt.gfid, name="sub"), 0o755, 0, None)
        await top.rename(Loc(pargfid=d.iatt.gfid, name="sub"),
                         Loc(pargfid=ROOT_GFID, name="renamed"), None)
        made["renamed"] = e.iatt.gfid
        r = await top.create(Loc(pargfid=ROOT_GFID, name="gone"), 0, 0o644, 0, Fd(), None)
        await top.unlink(Loc(pargfid=ROOT_GFID, name="gone"), 0, None)
        gone = r.iatt.gfid

    vol = await trio.to_thread.run_sync(glusterd.create_volume, brick)
    await trio.to_thread.run_sync(glusterd.mount, vol, mnt)
    try:
        assert sorted(os.listdir(mnt)) == ["abs-link", "dir", "fifo", "hard", "renamed"]
        for name, gfid in made.items():
            assert mount_gfid(mnt / name) == gfid, name
        st = os.stat(mnt / "dir" / "data")
        # the setgid parent's group wins over the caller's, as on GlusterFS
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink) == \
            (0o640, 4321, os.stat(mnt / "dir").st_gid, 2)
        assert st.st_ino == os.stat(mnt / "hard").st_ino
        assert stat.S_IMODE(os.stat(mnt / "dir").st_mode) == 0o2750
        assert (mnt / "dir" / "data").read_bytes() == payload
        assert os.getxattr(mnt / "dir" / "data", "user.origin") == b"glusterpy"
        assert os.readlink(mnt / "abs-link") == "/etc/hostname"
        assert stat.S_ISFIFO(os.lstat(mnt / "fifo").st_mode)
        # GlusterFS changes what we wrote, through our handles
        with open(mnt / "hard", "r+b") as f:
            f.write(b"GLUSTERFS")
        (mnt / "renamed" / "from-gf").write_text("made by glusterfs")
        os.rename(mnt / "renamed", mnt / "dir" / "back")
        os.unlink(mnt / "fifo")
        gf_new = mount_gfid(mnt / "dir" / "back" / "from-gf")
    finally:
        await trio.to_thread.run_sync(glusterd.umount, mnt)
    await trio.to_thread.run_sync(glusterd.stop_volume, vol)

    volume_id = uuid.UUID(bytes=os.getxattr(brick, VOLUME_ID_KEY))
    async with posix_graph(brick, volume_id=volume_id) as top:
        back = (await top.lookup(Loc(path="/dir/back"), None)).iatt
        assert back.gfid == made["renamed"]
        assert (await top.lookup(Loc(pargfid=back.gfid, name="from-gf"), None)).iatt.gfid == \
            gf_new
        fd = Fd(gfid=made["hard"])
        assert bytes((await top.readv(fd, 9, 0, 0, None)).data) == b"GLUSTERFS"
        await top.release(fd, None)
        with pytest.raises(FopError):
            await top.lookup(Loc(gfid=made["fifo"]), None)
        with pytest.raises(FopError):
            await top.lookup(Loc(gfid=gone), None)
