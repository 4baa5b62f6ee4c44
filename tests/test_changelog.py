"""features/changelog: the brick's journal, in GlusterFS 10's files and format.

The format (glusterpy/changelog.py) round-trips in both encodings and reads
the files a GlusterFS 10 brick wrote (tests/data/changelog, and live from a
GlusterFS 10 volume with `changelog.changelog on` in the interop test);
the translator, under storage/posix and in a glusterpyd-generated brick
graph served over the network, records each fop GlusterFS records, rolls
over, keeps the htime index, and writes files GlusterFS's would be
byte-for-byte in everything that does not depend on time or gfids.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest
import trio

from glusterpy import changelog as cl
from glusterpy import fops
from glusterpy.changelog import ChangelogError, Record, changelogs_between, encode, parse
from glusterpy.fops import GFID, ROOT_GFID, Caller, Fd, FopError, Iatt, Loc
from glusterpy.graph import Graph
from xlators.features.changelog import decode_rename_info

DATA_DIR = Path(__file__).parent / "data" / "changelog"
ASCII_HEADER = b"GlusterFS Changelog | version: v1.2 | encoding : 2\n"
BINARY_HEADER = b"GlusterFS Changelog | version: v1.2 | encoding : 1\n"
G = [GFID(uuid.UUID(int=i + 0x1000).bytes) for i in range(8)]


def sample_records() -> list[Record]:
    return [
        Record.entry(G[1], "MKDIR", ROOT_GFID, "d", mode=stat.S_IFDIR | 0o755, uid=0, gid=0),
        Record.entry(G[2], "CREATE", G[1], "f é", mode=stat.S_IFREG | 0o644, uid=1000,
                     gid=100),
        Record.data(G[2]),
        Record.meta(G[2], "SETATTR"),
        Record.meta(G[2], "SETXATTR"),
        Record.entry(G[2], "LINK", G[1], "hl"),
        Record.entry(G[3], "SYMLINK", ROOT_GFID, "sl"),
        Record.entry(G[4], "MKNOD", ROOT_GFID, "fifo", mode=stat.S_IFIFO | 0o600, uid=7,
                     gid=8),
        Record.entry(G[2], "RENAME", G[1], "hl", new_pargfid=ROOT_GFID, new_basename="hl2"),
        Record.entry(G[2], "UNLINK", ROOT_GFID, "hl2"),
        Record.entry(G[5], "RMDIR", G[1], "sub", path="d/sub"),
        Record.meta(G[6], "REMOVEXATTR"),
    ]


# -- the format -------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["ascii", "binary"])
def test_encode_parse_round_trip(binary):
    recs = sample_records()
    data = encode(recs, binary=binary)
    assert data.startswith(BINARY_HEADER if binary else ASCII_HEADER)
    assert parse(data) == recs
    assert encode(parse(data), binary=binary) == data
    assert cl.parse_header(data).binary is binary


def test_ascii_bytes_are_glusterfs_layout():
    """Each record as changelog_encode_ascii writes it: type letter, gfid,
    NUL-separated decimal fields, a NUL at the end; an unlink without a
    captured path ends in three NULs (del_entry_fn)."""
    g, p = str(G[2]).encode(), str(G[1]).encode()
    assert cl.encode_record(Record.data(G[2])) == b"D" + g + b"\0"
    assert cl.encode_record(Record.meta(G[2], "SETATTR")) == b"M" + g + b"\x0038\0"
    assert cl.encode_record(Record.entry(G[2], "CREATE", G[1], "f", mode=0o100644, uid=1,
                                         gid=2)) == \
        b"E" + g + b"\x0023\x0033188\x001\x002\0" + p + b"/f\0"
    assert cl.encode_record(Record.entry(G[2], "UNLINK", G[1], "f")) == \
        b"E" + g + b"\x005\0" + p + b"/f\0\0\0"
    assert cl.encode_record(Record.entry(G[2], "UNLINK", G[1], "f", path="d/f")) == \
        b"E" + g + b"\x005\0" + p + b"/f\0d/f\0"
    assert cl.encode_record(Record.entry(G[2], "RENAME", G[1], "a", new_pargfid=G[1],
                                         new_basename="b")) == \
        b"E" + g + b"\x008\0" + p + b"/a\0" + p + b"/b\0"
    # binary: raw gfids, numbers as 32-bit little-endian
    assert cl.encode_record(Record.meta(G[2], "SETXATTR"), binary=True) == \
        b"M" + bytes(G[2]) + b"\0\x11\0\0\0\0"


def test_parses_what_glusterfs10_wrote():
    """Files a GlusterFS 10 brick wrote (FUSE: mkdir d, write d/f, chmod,
    link, symlink, rename, setxattr, truncate, unlink, mknod fifo, mkdir and
    rmdir e; then, binary, create, rename, unlink) parse to those records
    and encode back to the same bytes."""
    ascii_data = (DATA_DIR / "gf10-ascii.CHANGELOG").read_bytes()
    recs = parse(ascii_data)
    assert [(r.type, r.fop_name) for r in recs] == [
        ("M", "SETXATTR"), ("E", "MKDIR"), ("E", "CREATE"), ("D", ""), ("M", "SETATTR"),
        ("E", "LINK"), ("E", "SYMLINK"), ("E", "RENAME"), ("M", "SETXATTR"), ("E", "UNLINK"),
        ("E", "MKNOD"), ("E", "MKDIR"), ("E", "RMDIR")]
    mkdir, create = recs[1], recs[2]
    assert (mkdir.pargfid, mkdir.basename, mkdir.mode, mkdir.is_dir) == \
        (ROOT_GFID, "d", stat.S_IFDIR | 0o755, True)
    assert (create.pargfid, create.basename, create.mode, create.uid, create.gid) == \
        (mkdir.gfid, "f", stat.S_IFREG | 0o644, 0, 0)
    assert recs[7].new_basename == "hl2" and recs[9].path == ""
    assert recs[10].mode == stat.S_IFIFO | 0o644
    assert encode(recs) == ascii_data
    binary_data = (DATA_DIR / "gf10-binary.CHANGELOG").read_bytes()
    brecs = parse(binary_data)
    assert [(r.type, r.fop_name, r.basename) for r in brecs] == [
        ("E", "CREATE", "bin"), ("D", "", None), ("E", "RENAME", "bin"), ("E", "UNLINK", "bin2")]
    assert encode(brecs, binary=True) == binary_data


def test_htime_index_and_changelogs_between(tmp_path):
    """The HTIME file a GlusterFS 10 brick wrote, read from a copy of its
    changelog directory (the index holds the original absolute paths)."""
    cdir = tmp_path / "changelogs"
    (cdir / "htime").mkdir(parents=True)
    shutil.copy(DATA_DIR / "gf10.HTIME", cdir / "htime" / "HTIME.1796572592")
    day = cdir / "2026" / "12" / "06"
    day.mkdir(parents=True)
    shutil.copy(DATA_DIR / "gf10-ascii.CHANGELOG", day / "CHANGELOG.1796572594")
    shutil.copy(DATA_DIR / "gf10-binary.CHANGELOG", day / "CHANGELOG.1796572603")
    hist = cl.history(str(cdir))
    assert [ts for ts, _, _ in hist] == [1796572592, 1796572594, 1796572596, 1796572598,
                                         1796572600, 1796572601, 1796572603, 1796572605,
                                         1796572608]
    assert [usable for _, _, usable in hist].count(True) == 2
    between = changelogs_between(str(tmp_path), 0, 2**31, changelog_dir=str(cdir))
    assert between == [str(day / "CHANGELOG.1796572594"), str(day / "CHANGELOG.1796572603")]
    # a change at 1796572602 is in the changelog rolled over at ...603
    assert changelogs_between("/", 1796572602, 1796572602, changelog_dir=str(cdir)) == \
        [str(day / "CHANGELOG.1796572603")]
    assert changelogs_between("/", 1796572595, 1796572599, changelog_dir=str(cdir)) == []
    assert changelogs_between("/", 1796572610, 1796572620, changelog_dir=str(cdir)) == []
    with pytest.raises(ChangelogError):
        changelogs_between("/", 5, 4, changelog_dir=str(cdir))


@pytest.mark.parametrize("data, what", [
    (b"", "not a GlusterFS changelog"),
    (b"GlusterFS Changelog | version: v1.2 | encoding : 3\n", "encoding"),
    (b"GlusterFS Changelog | version: v2.0 | encoding : 2\n", "version"),
    (ASCII_HEADER + b"X", "record type"),
    (ASCII_HEADER + b"D" + str(G[0]).encode(), "truncated"),
    (ASCII_HEADER + b"Dnot-a-gfid-not-a-gfid-not-a-gfid-xxx\0", "not a gfid"),
    (ASCII_HEADER + b"M" + str(G[0]).encode() + b"\x00999\0", "not a GlusterFS fop"),
    (ASCII_HEADER + b"E" + str(G[0]).encode() + b"\x0038\0", "in an E record"),
    (ASCII_HEADER + b"E" + str(G[0]).encode() + b"\x009\0" + str(G[1]).encode() + b"x\0",
     "expected '/'"),
])
def test_parse_refuses_what_is_not_a_changelog(data, what):
    with pytest.raises(ChangelogError, match=what):
        parse(data)


def test_records_refuse_what_cannot_be_written():
    with pytest.raises(ChangelogError):
        Record.entry(G[0], "CREATE", ROOT_GFID, "f")            # no mode/uid/gid
    with pytest.raises(ChangelogError):
        Record.entry(G[0], "LINK", ROOT_GFID, "a/b")
    with pytest.raises(ChangelogError):
        Record.entry(G[0], "SETATTR", ROOT_GFID, "a")
    with pytest.raises(ChangelogError):
        Record.meta(G[0], "NOSUCHFOP")


def test_v11_unlink_has_no_path():
    g, p = str(G[2]).encode(), str(G[1]).encode()
    data = b"GlusterFS Changelog | version: v1.1 | encoding : 2\n" + \
        b"E" + g + b"\x005\0" + p + b"/f\0" + b"D" + g + b"\0"
    assert parse(data) == [Record("E", G[2], 5, G[1], "f"), Record.data(G[2])]


def test_dht_rename_info():
    raw = bytes(G[1]) + bytes(G[2]) + (2).to_bytes(4, "little") + (4).to_bytes(4, "little") \
        + b"a\0new\0"
    assert decode_rename_info(raw) == (G[1], G[2], "a", "new")
    with pytest.raises(ValueError):
        decode_rename_info(raw[:40])


# -- the translator, under storage/posix in process ----------------------------


def journal_volfile(brick: Path, **options) -> str:
    """storage/posix -> features/changelog; keyword options use underscores
    for the volfile's hyphens."""
    text = (f"volume cl-posix\n    type storage/posix\n    option directory {brick}\n"
            "end-volume\nvolume cl-changelog\n    type features/changelog\n")
    for key, value in options.items():
        text += f"    option {key.replace('_', '-')} {value}\n"
    return text + "    subvolumes cl-posix\nend-volume\n"


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


def cdir(brick: Path) -> Path:
    return brick / ".glusterfs" / "changelogs"


async def wait_rollovers(brick: Path, count: int, timeout: float = 10) -> list:
    """The htime index once it has `count` entries."""
    with trio.fail_after(timeout):
        while True:
            hist = cl.history(str(cdir(brick)))
            if len(hist) >= count:
                return hist
            await trio.sleep(0.1)


def journal(brick: Path) -> list[Record]:
    """Every record of every rolled-over changelog, oldest first."""
    out = []
    for path in changelogs_between(str(brick), 0, 2**31):
        out += parse(Path(path).read_bytes())
    return out


async def make_file(top, parent: GFID, name: str) -> tuple[Fd, GFID]:
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(pargfid=parent, name=name), os.O_RDWR | os.O_CREAT,
                             stat.S_IFREG | 0o644, 0, fd, gfid_req())
    fd.gfid = reply.iatt.gfid
    return fd, reply.iatt.gfid


async def roll(graph: Graph, brick: Path, **options) -> None:
    """Roll the journal over now: any reconfigure of a live journal does,
    as in GlusterFS; returns once the htime index has the rollover."""
    before = len(cl.history(str(cdir(brick))))
    graph.top.reconfigure({"changelog": "on", "rollover-time": "3600", **options})
    await wait_rollovers(brick, before + 1)


async def test_records_each_fop(brick):
    """create/mkdir/write/setattr/rename/unlink/link/symlink/setxattr/
    truncate/rmdir/mknod, as changelog.c records them: one D and one M of
    each kind per inode per changelog, every E; an unlink's loc without a
    gfid (as protocol/server passes it) still names the inode."""
    graph = Graph.from_text(journal_volfile(brick, changelog="on", rollover_time=3600))
    async with graph.running():
        top = graph.top
        d = (await top.mkdir(Loc(pargfid=ROOT_GFID, name="d"), 0o755, 0, gfid_req())).iatt.gfid
        token = fops.caller.set(Caller(uid=1000, gid=100))
        try:
            fd, f = await make_file(top, d, "f")
        finally:
            fops.caller.reset(token)
        await top.writev(fd, b"hello", 0, 0, None)
        await top.writev(fd, b" again", 5, 0, None)        # same changelog: no new D
        await top.setattr(Loc(gfid=f), Iatt(mode=0o600), fops.SET_ATTR_MODE, None)
        await top.fsetattr(fd, Iatt(uid=0), fops.SET_ATTR_UID, None)   # M again: same kind
        await top.link(Loc(gfid=f), Loc(pargfid=d, name="hl"), None)
        sl = (await top.symlink("f", Loc(pargfid=d, name="sl"), 0, gfid_req())).iatt.gfid
        await top.rename(Loc(pargfid=d, name="hl"), Loc(pargfid=ROOT_GFID, name="hl2"), None)
        await top.setxattr(Loc(gfid=f), {"user.k": b"v"}, 0, None)
        await top.removexattr(Loc(gfid=f), "user.k", None)            # same kind as setxattr
        await top.truncate(Loc(gfid=f), 2, None)                       # D already there
        await top.unlink(Loc(pargfid=ROOT_GFID, name="hl2"), 0, None)
        node = (await top.mknod(Loc(pargfid=ROOT_GFID, name="fifo"), stat.S_IFIFO | 0o600, 0,
                                0, gfid_req())).iatt.gfid
        e = (await top.mkdir(Loc(pargfid=d, name="e"), 0o700, 0, gfid_req())).iatt.gfid
        await top.rmdir(Loc(pargfid=d, name="e"), 0, None)
        with pytest.raises(FopError):        # a failed fop leaves no record
            await top.unlink(Loc(pargfid=ROOT_GFID, name="missing"), 0, None)
        await roll(graph, brick)
        # the next changelog: the inode's D and M come again
        await top.ftruncate(fd, 1, None)
        await top.fsetxattr(fd, {"user.x": b"1"}, 0, None)
        await top.release(fd, None)
        await roll(graph, brick)
        await roll(graph, brick)                           # nothing since: an empty one
    files = changelogs_between(str(brick), 0, 2**31)
    assert len(files) == 2
    root = ROOT_GFID
    assert parse(Path(files[0]).read_bytes()) == [
        Record.entry(d, "MKDIR", root, "d", mode=stat.S_IFDIR | 0o755, uid=0, gid=0),
        Record.entry(f, "CREATE", d, "f", mode=stat.S_IFREG | 0o644, uid=1000, gid=100),
        Record.data(f),
        Record.meta(f, "SETATTR"),
        Record.entry(f, "LINK", d, "hl"),
        Record.entry(sl, "SYMLINK", d, "sl"),
        Record.entry(f, "RENAME", d, "hl", new_pargfid=root, new_basename="hl2"),
        Record.meta(f, "SETXATTR"),
        Record.entry(f, "UNLINK", root, "hl2"),
        Record.entry(node, "MKNOD", root, "fifo", mode=stat.S_IFIFO | 0o600, uid=0, gid=0),
        Record.entry(e, "MKDIR", d, "e", mode=stat.S_IFDIR | 0o700, uid=0, gid=0),
        Record.entry(e, "RMDIR", d, "e"),
    ]
    assert parse(Path(files[1]).read_bytes()) == [Record.data(f), Record.meta(f, "FSETXATTR")]
    # the empty one was deleted and indexed in lower case
    hist = cl.history(str(cdir(brick)))
    assert [usable for _, _, usable in hist][-3:] == [True, True, False]
    assert os.path.basename(hist[-1][1]).startswith("changelog.")
    assert not os.path.exists(hist[-1][1])


async def test_rolls_over_every_rollover_time(brick):
    """The timer: every rollover-time seconds a changelog, the ones with
    records renamed under YYYY/MM/DD, the empty ones deleted and indexed as
    changelog.<ts>; each index entry names its file's full path."""
    graph = Graph.from_text(journal_volfile(brick, changelog="on", rollover_time=1))
    async with graph.running():
        fd, f = await make_file(graph.top, ROOT_GFID, "f")
        await wait_rollovers(brick, 3)
        await graph.top.release(fd, None)
    hist = cl.history(str(cdir(brick)))
    stamps = [ts for ts, _, _ in hist]
    assert stamps == sorted(set(stamps))
    assert [u for _, _, u in hist].count(True) == 1
    ts, path, _ = next(h for h in hist if h[2])
    assert path == cl.rolled_name(str(cdir(brick)), ts)
    assert parse(Path(path).read_bytes())[0] == Record.entry(
        f, "CREATE", ROOT_GFID, "f", mode=stat.S_IFREG | 0o644, uid=0, gid=0)
    raw = Path(cl.htime_files(str(cdir(brick)))[0]).read_bytes()
    assert raw.split(b"\0")[:-1] == [os.fsencode(p.replace("/changelogs/", "/changelogs/"))
                                      for _, p, _ in hist]
    # the live journal is the header alone, fsynced or not
    assert (cdir(brick) / "CHANGELOG").read_bytes().startswith(ASCII_HEADER)


async def test_off_by_default_and_directories_made(brick):
    """Off (GlusterFS's default) nothing is recorded, but the directories
    exist, 0600 as GlusterFS makes them, for consumers to look into."""
    graph = Graph.from_text(journal_volfile(brick))
    async with graph.running():
        await make_file(graph.top, ROOT_GFID, "f")
    for sub in ("", "htime", "csnap"):
        assert stat.S_IMODE((cdir(brick) / sub).stat().st_mode) == 0o600
    assert sorted(os.listdir(cdir(brick))) == ["csnap", "htime"]
    assert os.listdir(cdir(brick) / "htime") == []


async def test_explicit_rollover_for_gsyncd_only(brick):
    """The virtual setxattr glusterfs.changelog.rollover on the brick root:
    from gsyncd's pid the journal rolls over at once (the reply comes with
    the rollover in the index, rollover-time an hour away), an empty
    journal as GlusterFS's timer rolls one over; from any other pid EPERM,
    elsewhere than the root EINVAL, with the journal off ENOTSUP - and none
    of them rolls over or leaves the key on the brick."""
    from glusterpy.keys import CHANGELOG_ROLLOVER_KEY as KEY
    graph = Graph.from_text(journal_volfile(brick, changelog="on", rollover_time=3600))
    gsyncd = Caller(uid=0, gid=0, pid=fops.ClientPid.GSYNCD)
    async with graph.running():
        top = graph.top
        fd, f = await make_file(top, ROOT_GFID, "f")
        start = len(cl.history(str(cdir(brick))))
        for caller in (Caller(uid=0, gid=0), Caller(uid=0, gid=0, pid=fops.ClientPid.DEFRAG)):
            token = fops.caller.set(caller)
            try:
                with pytest.raises(FopError) as e:
                    await top.setxattr(Loc(gfid=ROOT_GFID), {KEY: b"1"}, 0, None)
                assert e.value.errno == errno.EPERM
            finally:
                fops.caller.reset(token)
        token = fops.caller.set(gsyncd)
        try:
            for loc, xattrs in ((Loc(gfid=f), {KEY: b"1"}),
                                (Loc(gfid=ROOT_GFID), {KEY: b"1", "user.x": b"y"})):
                with pytest.raises(FopError) as e:
                    await top.setxattr(loc, xattrs, 0, None)
                assert e.value.errno == errno.EINVAL
            assert len(cl.history(str(cdir(brick)))) == start
            await top.setxattr(Loc(gfid=ROOT_GFID), {KEY: b"1"}, 0, None)
            hist = cl.history(str(cdir(brick)))             # no waiting: already there
            assert len(hist) == start + 1 and hist[-1][2]
            assert parse(Path(hist[-1][1]).read_bytes())[0].gfid == f
            await top.setxattr(Loc(gfid=ROOT_GFID), {KEY: b"1"}, 0, None)
            hist = cl.history(str(cdir(brick)))
            assert len(hist) == start + 2 and not hist[-1][2]      # empty: deleted
            assert hist[-1][0] > hist[-2][0]
            graph.top.reconfigure({"changelog": "off"})
            await trio.sleep(0.1)
            with pytest.raises(FopError) as e:
                await top.setxattr(Loc(gfid=ROOT_GFID), {KEY: b"1"}, 0, None)
            assert e.value.errno == errno.ENOTSUP
        finally:
            fops.caller.reset(token)
        await top.release(fd, None)
    assert KEY not in os.listxattr(brick)
