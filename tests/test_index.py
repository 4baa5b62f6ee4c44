"""features/index: the brick's heal index, on disk as GlusterFS 10 keeps it.

A brick graph storage/posix -> features/locks -> features/index (glusterd's
order) gets the xattrops cluster/replicate sends - the values are those of
../shared/glusterfs10-samples/captures/replica3-kill-heal.pcap - and the
index directories must change exactly as GlusterFS's do.  The index is
also read the way the self-heal daemon reads it, through fops (locally and
over protocol/client), and a GlusterFS 10 brick from the samples is served.
"""

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc, XattropType
from glusterpy.graph import Graph

from replicate_support import NetworkReplica, brick_stack, create_file, gfid_req, wait_for
from xlators.cluster.replicate import changelog as cl

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "glusterfs10-samples"
KEYS = ["trusted.afr.rep3-client-0", "trusted.afr.rep3-client-1", "trusted.afr.rep3-client-2"]
DIRTY = "trusted.afr.dirty"


def brick_graph(directory: Path) -> Graph:
    text, _ = brick_stack("rep3", 0, directory)
    return Graph.from_text(text)


def index_dir(brick: Path, kind: str) -> Path:
    return brick / ".glusterfs" / "indices" / kind


def links(brick: Path, kind: str) -> set[str]:
    return {n for n in os.listdir(index_dir(brick, kind)) if not n.startswith(kind + "-")}


def base_files(brick: Path, kind: str) -> list[str]:
    return [n for n in os.listdir(index_dir(brick, kind)) if n.startswith(kind + "-")]


def pre_op(slot=cl.DATA):
    return cl.changelog_dict(KEYS, None, DIRTY, cl.one_slot(slot, 1))


def post_op(failed=(), slot=cl.DATA):
    rows = [cl.one_slot(slot, 1) if i in failed else (0, 0, 0) for i in range(3)]
    return cl.changelog_dict(KEYS, rows, DIRTY, cl.one_slot(slot, -1))


async def test_directories_made_as_glusterfs_makes_them(brick):
    async with brick_graph(brick).running():
        pass
    for kind in ("xattrop", "dirty", "entry-changes"):
        st = index_dir(brick, kind).stat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE((brick / ".glusterfs" / "indices").stat().st_mode) == 0o600


async def test_a_write_enters_and_leaves_the_dirty_index(brick):
    """pre-op dirty +1 links dirty/<gfid>; post-op -1 unlinks it, the
    base file stays (mode 0000) as on the sample bricks."""
    async with brick_graph(brick).running() as g:
        fd, gfid = await create_file(g.top, "f")
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY, pre_op(), None)
        assert links(brick, "dirty") == {str(gfid)}
        base = index_dir(brick, "dirty") / base_files(brick, "dirty")[0]
        assert stat.S_IMODE(base.stat().st_mode) == 0 and base.stat().st_nlink == 2
        assert os.path.samefile(base, index_dir(brick, "dirty") / str(gfid))
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY, post_op(), None)
        assert links(brick, "dirty") == set() and links(brick, "xattrop") == set()
        await g.top.release(fd, None)


async def test_pending_counters_enter_the_xattrop_index(brick):
    """A post-op that accuses child 1 (the write failed there) puts the
    gfid in xattrop/; the heal's undo-pending takes it out."""
    async with brick_graph(brick).running() as g:
        fd, gfid = await create_file(g.top, "f")
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY, pre_op(), None)
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY, post_op(failed=(1,)), None)
        assert links(brick, "xattrop") == {str(gfid)} and links(brick, "dirty") == set()
        assert os.getxattr(brick / "f", KEYS[1]) == bytes.fromhex("000000010000000000000000")
        undo = cl.changelog_dict(KEYS, [(0, 0, 0), (-1, 0, 0), (0, 0, 0)], DIRTY, (0, 0, 0),
                                 dirty_last=True)
        await g.top.xattrop(Loc(gfid=gfid), XattropType.ADD_ARRAY, undo, None)
        assert links(brick, "xattrop") == set()
        # GlusterFS leaves the zeroed keys behind, as on the sample bricks
        assert os.getxattr(brick / "f", KEYS[1]) == bytes(12)
        await g.top.release(fd, None)


async def test_the_wind_phase_indexes_before_posix(brick):
    """The gfid is indexed before the xattrop reaches posix, so a brick
    that dies in between still has it; an xattrop posix refuses (here: the
    file is gone) leaves that link for a crawl to purge."""
    async with brick_graph(brick).running() as g:
        fd, gfid = await create_file(g.top, "f")
        await g.top.release(fd, None)
        await g.top.unlink(Loc(path="/f", pargfid=ROOT_GFID, name="f"), 0, None)
        with pytest.raises(FopError) as e:
            await g.top.xattrop(Loc(gfid=gfid), XattropType.ADD_ARRAY, pre_op(), None)
        assert e.value.errno == errno.ENOENT
        assert links(brick, "dirty") == {str(gfid)}


async def test_entry_changes_name_index(brick):
    """glusterfs.xattrop-entry-create/-delete and -purge-index (granular
    entry heal): entry-changes/<pargfid>/<name>."""
    async with brick_graph(brick).running() as g:
        d = await g.top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0o755, 0,
                              gfid_req())
        dloc = Loc(gfid=d.iatt.gfid)
        names = index_dir(brick, "entry-changes") / str(d.iatt.gfid)
        await g.top.xattrop(dloc, XattropType.ADD_ARRAY, pre_op(cl.ENTRY),
                            {"glusterfs.xattrop-entry-create": "new"})
        assert os.listdir(names) == ["new"]
        assert stat.S_IMODE(names.stat().st_mode) == 0o600
        await g.top.xattrop(dloc, XattropType.ADD_ARRAY, post_op((1,), cl.ENTRY), None)
        await g.top.xattrop(dloc, XattropType.ADD_ARRAY, pre_op(cl.ENTRY),
                            {"glusterfs.xattrop-entry-create": "gone"})
        await g.top.xattrop(dloc, XattropType.ADD_ARRAY, post_op(slot=cl.ENTRY),
                            {"glusterfs.xattrop-entry-delete": "gone"})
        assert os.listdir(names) == ["new"]
        assert links(brick, "xattrop") == {str(d.iatt.gfid)}
        # a heal resets the counters and purges the (now non-empty) name
        # index: it is renamed aside for a later crawl, as GlusterFS does
        undo = cl.changelog_dict(KEYS, [(0, 0, 0), (0, 0, -1), (0, 0, 0)], DIRTY, (0, 0, 0),
                                 dirty_last=True)
        await g.top.xattrop(dloc, XattropType.ADD_ARRAY, undo,
                            {"glusterfs.xattrop-purge-index": 1})
        assert links(brick, "xattrop") == set()
        assert not names.exists()
        aside = [n for n in links(brick, "entry-changes")]
        assert len(aside) == 1 and os.listdir(index_dir(brick, "entry-changes") / aside[0]) \
            == ["new"]
        with pytest.raises(FopError) as e:
            await g.top.xattrop(dloc, XattropType.ADD_ARRAY, pre_op(cl.ENTRY),
                                {"glusterfs.xattrop-entry-create": "a/b"})
        assert e.value.errno == errno.EINVAL


async def test_other_optypes_and_keys_are_not_indexed(brick):
    async with brick_graph(brick).running() as g:
        fd, gfid = await create_file(g.top, "f")
        await g.top.fxattrop(fd, XattropType.GET_AND_SET, {KEYS[1]: cl.encode((1, 0, 0))}, None)
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY, {"trusted.other": cl.encode((1, 0, 0))},
                             None)
        assert links(brick, "xattrop") == set() and links(brick, "dirty") == set()
        # ADD_ARRAY64 is tracked only for watched keys (trusted.ec.dirty)
        await g.top.fxattrop(fd, XattropType.ADD_ARRAY64, {"trusted.ec.dirty": bytes(7) + b"\1"},
                             None)
        assert links(brick, "xattrop") == {str(gfid)}
        await g.top.release(fd, None)


async def read_index(top, kind_key: str) -> tuple[GFID, list]:
    got = await top.getxattr(Loc(gfid=ROOT_GFID, path="/"), kind_key, None)
    vgfid = GFID(got.dict[kind_key])
    looked = await top.lookup(Loc(gfid=vgfid), {"glusterfs.index-ia-type-get-req": 1})
    assert looked.iatt.is_dir
    fd = Fd(gfid=vgfid, is_dir=True)
    await top.opendir(Loc(gfid=vgfid), fd, None)
    entries, offset = [], 0
    while True:
        got = (await top.readdir(fd, 300, offset, {"get-gfid-type": 1})).entries
        if not got:
            break
        entries.extend(got)
        offset = got[-1].off
    await top.releasedir(fd, None)
    return vgfid, entries


async def fill_index(top, count: int) -> list[GFID]:
    gfids = []
    for i in range(count):
        fd, gfid = await create_file(top, f"f{i}")
        await top.fxattrop(fd, XattropType.ADD_ARRAY, pre_op(), None)
        await top.fxattrop(fd, XattropType.ADD_ARRAY, post_op(failed=(2,)), None)
        await top.release(fd, None)
        gfids.append(gfid)
    return gfids


async def test_the_index_as_the_self_heal_daemon_reads_it(brick):
    async with brick_graph(brick).running() as g:
        top = g.top
        gfids = await fill_index(top, 7)
        count = await top.getxattr(Loc(gfid=ROOT_GFID), "glusterfs.xattrop_index_count", None)
        assert count.dict["glusterfs.xattrop_index_count"] == 7
        looked = await top.lookup(Loc(path="/f0", pargfid=ROOT_GFID, name="f0"),
                                  {"link-count": "glusterfs.xattrop_index_count"})
        assert looked.xdata["link-count"] == 1
        vgfid, entries = await read_index(top, "glusterfs.xattrop_index_gfid")
        assert sorted(e.name for e in entries) == sorted(str(g) for g in gfids)
        assert all(e.type == 8 and e.iatt.is_reg for e in entries)     # get-gfid-type
        # the heal daemon removes a stale entry by unlinking it in the index
        await top.unlink(Loc(pargfid=vgfid, name=str(gfids[0])), 0, None)
        assert str(gfids[0]) not in links(brick, "xattrop")
        # a name in the index is looked up as the index entry itself
        one = await top.lookup(Loc(pargfid=vgfid, name=str(gfids[1])), None)
        assert one.iatt.is_reg


async def test_stale_base_files_are_removed_by_a_crawl(brick):
    """A restart makes a new base file; the old one, linked by nothing,
    goes when the directory is read (check_delete_stale_index_file)."""
    async with brick_graph(brick).running() as g:
        await fill_index(g.top, 1)
    old = base_files(brick, "xattrop")
    async with brick_graph(brick).running() as g:
        await g.top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0o755, 0, gfid_req())
        d = await g.top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        await g.top.xattrop(Loc(gfid=d.iatt.gfid), XattropType.ADD_ARRAY,
                            post_op(failed=(1,), slot=cl.ENTRY), None)
        assert len(base_files(brick, "xattrop")) == 2
        # both old entries still link the old base: it is not stale yet
        await read_index(g.top, "glusterfs.xattrop_index_gfid")
        assert set(old) <= set(base_files(brick, "xattrop"))
        os.unlink(index_dir(brick, "xattrop") / next(iter(links(brick, "xattrop") - {
            str(d.iatt.gfid)})))
        await read_index(g.top, "glusterfs.xattrop_index_gfid")
        assert not set(old) & set(base_files(brick, "xattrop"))


async def test_index_over_the_network(tmp_path):
    """The self-heal daemon's calls (replica3-kill-heal.pcap: GETXATTR of
    the index gfid, LOOKUP with index-ia-type-get-req, OPENDIR, READDIR
    with get-gfid-type) through protocol/client to our brick."""
    net = NetworkReplica(tmp_path, 1, vol="rep3")
    async with net.running():
        graph = net.client_graph()
        async with graph.running():
            client = graph.by_name["rep3-client-0"]
            afr = graph.by_name["rep3-replicate-0"]
            await wait_for(lambda: afr.child_up[0])
            gfids = await fill_index(client, 3)
            vgfid, entries = await read_index(client, "glusterfs.xattrop_index_gfid")
            assert sorted(e.name for e in entries) == sorted(str(g) for g in gfids)
            looked = await client.lookup(Loc(gfid=vgfid), {"glusterfs.index-ia-type-get-req": 1})
            assert looked.xdata["glusterfs.index-ia-type-get-rsp"] == 1


@pytest.fixture
def sample_r1(tmp_path):
    tarball = SAMPLES / "bricks" / "rep3-bricks.tar.gz"
    if not tarball.exists():
        pytest.skip(f"GlusterFS 10 sample bricks not found at {tarball}")
    if os.geteuid() != 0:
        pytest.skip("the sample bricks carry trusted.* xattrs: root only")
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", str(tarball), "-C",
                    str(tmp_path)], check=True)
    return tmp_path / "r1"


async def test_serves_a_glusterfs10_brick(sample_r1):
    """The sample brick after GlusterFS healed it: its index holds only the
    base files; our index adds and removes links beside them and reads
    them as GlusterFS's shd would."""
    brick = sample_r1
    assert links(brick, "xattrop") == set() and base_files(brick, "xattrop")
    async with brick_graph(brick).running() as g:
        f1 = await g.top.lookup(Loc(path="/keep/f1", pargfid=GFID(
            "bae16153-2435-424e-82d4-2db97c09246e"), name="f1"), None)
        gfid = f1.iatt.gfid
        assert str(gfid) == "0620cca1-48de-40b5-afd2-85aa5509c0e5"
        await g.top.xattrop(Loc(gfid=gfid), XattropType.ADD_ARRAY,
                            post_op(failed=(1,)), None)
        assert links(brick, "xattrop") == {str(gfid)}
        assert os.getxattr(brick / "keep" / "f1", KEYS[1]) == \
            bytes.fromhex("000000010000000000000000")
        vgfid, entries = await read_index(g.top, "glusterfs.xattrop_index_gfid")
        assert [e.name for e in entries] == [str(gfid)]
        # the old base file, linked by nothing, went with the crawl
        assert base_files(brick, "xattrop") == [n for n in base_files(brick, "xattrop")
                                                if "91f4b7a4" not in n]


async def test_brick_answers_the_path_of_an_indexed_gfid(brick):
    """GlusterFS's self-heal daemon asks storage/posix for
    ``glusterfs.gfid2path`` (GFID_TO_PATH_KEY) of every index entry before
    it heals it and skips the entry when that fails: the brick answers a
    path, or ``<gfid:UUID>`` as GlusterFS's inode_path does."""
    async with brick_graph(brick).running() as g:
        d = await g.top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0o755, 0,
                              gfid_req())
        fd, gfid = await create_file(g.top, "f", parent=d.iatt.gfid, parent_path="/d")
        await g.top.release(fd, None)
        key = "glusterfs.gfid2path"
        got = await g.top.getxattr(Loc(gfid=gfid), key, None)
        assert got.dict[key] == "/d/f"
        assert (await g.top.getxattr(Loc(gfid=d.iatt.gfid), key, None)).dict[key] == "/d"
        assert (await g.top.getxattr(Loc(gfid=ROOT_GFID), key, None)).dict[key] == "/"
        os.removexattr(brick / "d" / "f", next(k for k in os.listxattr(brick / "d" / "f")
                                                if k.startswith("trusted.gfid2path.")))
        assert (await g.top.getxattr(Loc(gfid=gfid), key, None)).dict[key] == f"<gfid:{gfid}>"
