"""cluster/distribute: GlusterFS's hash and layouts, placement against
GlusterFS 10's own bricks, linkto files, self-heal, readdir, events, and the
rebalance building blocks (fix-layout, file migration) - on local graphs of
storage/posix bricks.

The hash vectors were computed with GlusterFS 10's gf_dm_hashfn and its
default rsync regex (libglusterfs/src/hashfn.c, dht-hashfn.c) compiled on
x86-64.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
import trio
from hypothesis import given, strategies as s

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Iatt, Loc
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph
from glusterpy.xlator import Event
from xlators.cluster.distribute import layout as dl

SAMPLES = Path("/work/shared/glusterfs10-samples/bricks")
LAYOUT_KEY = "trusted.glusterfs.dht"
LINKTO_KEY = "trusted.glusterfs.dht.linkto"
MDS_KEY = "trusted.glusterfs.dht.mds"


# -- helpers ---------------------------------------------------------------------

def distribute_volfile(bricks, name: str = "dv", **options) -> str:
    """storage/posix bricks NAME-client-N under NAME-dht (glusterd's names);
    keyword options use underscores for hyphens."""
    parts = [f"volume {name}-client-{i}\n    type storage/posix\n"
             f"    option directory {brick}\nend-volume\n" for i, brick in enumerate(bricks)]
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    subs = " ".join(f"{name}-client-{i}" for i in range(len(bricks)))
    parts.append(f"volume {name}-dht\n    type cluster/distribute\n{opts}"
                 f"    subvolumes {subs}\nend-volume\n")
    return "".join(parts)


def make_bricks(tmp_path, count: int, prefix: str = "brick") -> list[Path]:
    bricks = []
    for i in range(count):
        brick = tmp_path / f"{prefix}{i}"
        brick.mkdir(exist_ok=True)
        bricks.append(brick)
    return bricks


@contextlib.asynccontextmanager
async def running(bricks, name: str = "dv", **options):
    graph = Graph.from_text(distribute_volfile(bricks, name, **options))
    async with graph.running():
        assert await graph.wait_child_up(5)
        yield graph.top


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


def xget(path, key):
    try:
        return os.getxattr(path, key, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def is_linkto(path) -> bool:
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == stat.S_ISVTX and \
        xget(path, LINKTO_KEY) is not None


def disk_layout(path) -> dl.DiskLayout | None:
    raw = xget(path, LAYOUT_KEY)
    return dl.decode_disk_layout(raw) if raw is not None else None


def hashed_brick(bricks, rel_dir: str, name: str) -> int:
    """Which brick a name hashes to, read from the bricks' layout xattrs."""
    h = dl.NameHasher().hash(name)
    owners = [i for i, b in enumerate(bricks)
              if (lay := disk_layout(b / rel_dir)) and lay.start != lay.stop and
              lay.start <= h <= lay.stop]
    assert len(owners) == 1, (rel_dir, name, owners)
    return owners[0]


async def create_file(top, parent_gfid, path: str, data: bytes = b"", mode=0o644):
    name = path.rsplit("/", 1)[1]
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(path=path, pargfid=parent_gfid, name=name),
                             os.O_RDWR | os.O_CREAT | os.O_EXCL, mode, 0, fd, gfid_req())
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    await top.release(fd, None)
    return reply.iatt.gfid


async def mkdir(top, parent_gfid, path: str):
    name = path.rsplit("/", 1)[1]
    return (await top.mkdir(Loc(path=path, pargfid=parent_gfid, name=name), 0o755, 0,
                            gfid_req())).iatt.gfid


async def read_all(top, gfid) -> bytes:
    fd = Fd(gfid=gfid, flags=os.O_RDONLY)
    await top.open(Loc(gfid=gfid), os.O_RDONLY, fd, None)
    try:
        return bytes((await top.readv(fd, 1 << 24, 0, 0, None)).data)
    finally:
        await top.release(fd, None)


async def listing(top, gfid, path: str, size: int = 4096, plus: bool = True) -> list[str]:
    fd = Fd(gfid=gfid, is_dir=True)
    await top.opendir(Loc(path=path, gfid=gfid), fd, None)
    names, offset = [], 0
    try:
        while True:
            entries = (await (top.readdirp if plus else top.readdir)(fd, size, offset,
                                                                     None)).entries
            if not entries:
                return names
            names += [e.name for e in entries if e.name not in (".", "..")]
            offset = entries[-1].off
    finally:
        await top.releasedir(fd, None)


async def errno_of(awaitable) -> str:
    try:
        await awaitable
    except FopError as e:
        return errno.errorcode[e.errno]
    return "ok"


def check_volume(bricks, rel: str = "") -> None:
    """The invariants of a distribute volume under `rel`, read from the
    bricks: every directory's layout covers the hash space once, and every
    name is on its hashed brick or reachable through a linkto file there."""
    dirs = [rel]
    while dirs:
        d = dirs.pop()
        ranges = sorted((lay.start, lay.stop) for b in bricks
                        if (lay := disk_layout(b / d)) and lay.start != lay.stop)
        assert ranges and ranges[0][0] == 0 and ranges[-1][1] == 0xFFFFFFFF, (d, ranges)
        for (_, stop), (start, _) in zip(ranges, ranges[1:]):
            assert start == stop + 1, (d, ranges)
        names = set()
        for b in bricks:
            names |= {n for n in os.listdir(b / d) if not (d == "" and n == ".glusterfs")}
        for name in names:
            kinds = {i: b / d / name for i, b in enumerate(bricks)
                     if os.path.lexists(b / d / name)}
            if any(os.path.isdir(p) and not os.path.islink(p) for p in kinds.values()):
                assert len(kinds) == len(bricks), (d, name, "directory missing somewhere")
                dirs.append(f"{d}/{name}".lstrip("/"))
                continue
            data = [i for i, p in kinds.items() if not is_linkto(p)]
            assert len(data) == 1, (d, name, kinds)
            h = hashed_brick(bricks, d, name)
            if data[0] != h:
                assert h in kinds and is_linkto(kinds[h]), (d, name, "no linkto on hashed")
                target = xget(kinds[h], LINKTO_KEY)
                assert dl.linkto_target(target).endswith(f"-client-{data[0]}"), (d, name)


# -- the hash ----------------------------------------------------------------------

HASH_VECTORS = [  # name, gf_dm_hashfn(name), dht_hash_compute(name)
    ("", 0x884774A2, 0x884774A2), ("a", 0x3A17E4E6, 0x3A17E4E6),
    ("ab", 0xC3AF40D9, 0xC3AF40D9), ("abc", 0xBA8BD29A, 0xBA8BD29A),
    ("abcd", 0xD89627F6, 0xD89627F6), ("abcde", 0x0A45CCEC, 0x0A45CCEC),
    ("abcdefghijklmnop", 0x5F7662EF, 0x5F7662EF),
    ("abcdefghijklmnopq", 0xEE27CBD1, 0xEE27CBD1),
    ("f1", 0xD3B4775A, 0xD3B4775A), ("renamed10", 0x20230A17, 0x20230A17),
    ("spread", 0xB3872A32, 0xB3872A32), ("/", 0x8619BD58, 0x8619BD58),
    ("/spread", 0x2E79F974, 0x2E79F974),
    (".foo.Xy12Ab", 0x78D5F956, 0x0B55AC76),      # rsync's temporary name of "foo"
    ("foo", 0x0B55AC76, 0x0B55AC76), (".bashrc", 0xE759F102, 0xE759F102),
    (".a.b.c", 0xACDBC7FE, 0x4185A184), ("héllo", 0xB71C63D1, 0xB71C63D1),
    ("日本語", 0xEECBAA7D, 0xEECBAA7D), ("x" * 255, 0x8CA66F57, 0x8CA66F57),
    ("x" * 300, 0xDC325763, 0xDC325763),
]


@pytest.mark.parametrize("name,raw,munged", HASH_VECTORS,
                         ids=[repr(v[0][:12]) for v in HASH_VECTORS])
def test_hash_matches_glusterfs(name, raw, munged):
    assert dl.dm_hash(name.encode()) == raw
    assert dl.NameHasher().hash(name) == munged


def test_hash_regex_options():
    assert dl.NameHasher(rsync_regex=None).hash(".foo.Xy12Ab") == 0x78D5F956
    extra = dl.NameHasher(extra_regex=r"^(.+)\.tmp$")
    assert extra.hash("foo.tmp") == dl.dm_hash(b"foo")
    assert extra.hash(".foo.Xy12Ab") == dl.dm_hash(b"foo")   # the rsync regex still applies


# -- the layout xattr and layout arithmetic -------------------------------------------

def test_disk_layout_format():
    raw = dl.encode_disk_layout(1, 0, 0x55555555, 0xAAAAAAA9)
    assert raw == bytes.fromhex("000000010000000055555555aaaaaaa9")
    assert dl.decode_disk_layout(raw) == (1, 0, 0x55555555, 0xAAAAAAA9)
    for bad in (b"", bytes(15), bytes(17), bytes.fromhex("00000001000000070000000000000001")):
        with pytest.raises(ValueError):
            dl.decode_disk_layout(bad)


def new_layout(names, path, **kw):
    layout = dl.Layout([dl.LayoutEntry(i, n, err=errno.ENOENT) for i, n in enumerate(names)],
                       **{k: v for k, v in kw.items() if k in ("commit_hash", "spread")})
    dl.new_directory_layout(layout, path, dl.NameHasher(),
                            **{k: v for k, v in kw.items() if k not in ("commit_hash", "spread")})
    return {e.name: (e.start, e.stop) for e in layout.entries}


def test_new_directory_layout_is_glusterfs_sample():
    """The ranges glusterd 10.3's volume dist3 wrote for / and /spread."""
    names = [f"dist3-client-{i}" for i in range(3)]
    expected = {"dist3-client-0": (0xAAAAAAAA, 0xFFFFFFFF),
                "dist3-client-1": (0, 0x55555554),
                "dist3-client-2": (0x55555555, 0xAAAAAAA9)}
    assert new_layout(names, "/", weighted=False) == expected
    assert new_layout(names, "/spread", weighted=False) == expected
    # equal bricks weighted by size: the same ranges when the double
    # arithmetic lands on them, as it did on that machine
    assert new_layout(names, "/spread", chunks={0: 7, 1: 7, 2: 7}) == expected


def test_weighted_layout_and_spread():
    names = ["v-client-0", "v-client-1"]
    weighted = new_layout(names, "/d", chunks={0: 100, 1: 300})
    sizes = {n: stop - start + 1 for n, (start, stop) in weighted.items()}
    assert abs(sizes["v-client-1"] / sizes["v-client-0"] - 3) < 1e-6
    three = [f"v-client-{i}" for i in range(3)]
    spread = new_layout(three, "/d", spread=2)
    assert sum(1 for start, stop in spread.values() if start != stop) == 2
    gone = new_layout(three, "/d", decommissioned=[1])
    assert gone["v-client-1"] == (0, 0)


def test_anomalies():
    def layout(*ranges):
        return dl.Layout([dl.LayoutEntry(i, f"c{i}", start, stop)
                          for i, (start, stop) in enumerate(ranges)])
    assert dl.anomalies(layout((0, 99), (100, 0xFFFFFFFF)))[:2] == (0, 0)
    assert dl.anomalies(layout((0, 99), (200, 0xFFFFFFFF))).holes == 1
    assert dl.anomalies(layout((0, 199), (100, 0xFFFFFFFF))).overlaps == 1
    assert dl.anomalies(layout((0, 0), (0, 0))).holes == 1          # virgin
    missing = layout((0, 0x7FFFFFFF), (0x80000000, 0xFFFFFFFF))
    missing.entries.append(dl.LayoutEntry(2, "c2", err=errno.ENOENT))
    assert dl.anomalies(missing).missing == 1 and dl.missing_dirs(missing) == 1


@given(s.integers(0, dl.M32))
def test_whole_is_what_search_gives_every_hash(value):
    """Layout.whole (distribute's shortcut past the hash) names a subvolume
    only when search would give that one for any hash value."""
    def layout(*ranges):
        return dl.Layout([dl.LayoutEntry(i, f"c{i}", start, stop)
                          for i, (start, stop) in enumerate(ranges)])
    for ranges in [((0, dl.M32),), ((0, 0), (0, dl.M32)), ((5, 5), (0, dl.M32), (0, 99)),
                   ((0, dl.M32), (0, 99))]:
        whole = layout(*ranges).whole()
        assert whole is not None and layout(*ranges).search(value) == whole
    for ranges in [(), ((0, 0),), ((0, 99), (100, dl.M32)), ((1, dl.M32),), ((0, dl.M32 - 1),),
                   ((0, 99), (0, dl.M32))]:
        assert layout(*ranges).whole() is None


def test_fix_layout_keeps_what_it_can():
    """Adding a fourth brick: the new ranges keep as much of the old
    assignment as a new layout can (dht_selfheal_layout_maximize_overlap)."""
    hasher = dl.NameHasher()
    names = [f"v-client-{i}" for i in range(4)]
    old = dl.Layout([dl.LayoutEntry(i, names[i], err=errno.ENOENT) for i in range(3)])
    dl.new_directory_layout(old, "/d", hasher, weighted=False)
    old.entries.append(dl.LayoutEntry(3, names[3]))           # present, no range yet
    for e in old.entries:
        e.err = 0
    fixed = dl.fix_layout(old, "/d", hasher, weighted=False)
    assert dl.anomalies(fixed)[:2] == (0, 0)
    naive = dl.Layout([dl.LayoutEntry(i, n, err=-1) for i, n in enumerate(names)])
    dl.new_directory_layout(naive, "/d", hasher, weighted=False)
    kept = sum(dl.overlap(o, n) for o in old.entries for n in fixed.entries if o.index == n.index)
    kept_naive = sum(dl.overlap(o, n) for o in old.entries for n in naive.entries
                     if o.index == n.index)
    assert kept >= kept_naive and kept >= 0xFFFFFFFF // 2


@given(s.integers(1, 2**63 - 2), s.integers(0, 7), s.integers(2, 8))
def test_d_off_transform_round_trip(offset, index, count):
    index %= count
    y = dl.itransform(offset, index, count)
    back_index, back = dl.deitransform(y, count)
    assert back_index == index
    if y & (1 << 62):
        # GlusterFS's "huge" d_off loses the low bits (the brick resumes a
        # little earlier, never later)
        assert back <= offset and offset - back < 2 ** (dl.bits_for(count) + 1)
    else:
        assert back == offset


# -- GlusterFS 10's bricks --------------------------------------------------------------

@pytest.fixture(scope="module")
def dist3_sample(tmp_path_factory):
    tarball = SAMPLES / "dist3-bricks.tar.gz"
    if not tarball.exists():
        pytest.skip(f"no sample bricks in {SAMPLES}")
    if os.geteuid() != 0:
        pytest.skip("extracting trusted.* xattrs needs root")
    base = tmp_path_factory.mktemp("dist3")
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", str(tarball), "-C",
                    str(base)], check=True)
    # dist3-client-0/1/2 are /srv/d1, d2, d3 (volfiles/dist3.tcp-fuse.vol)
    return [base / "d1", base / "d2", base / "d3"]


def test_glusterfs10_placement_is_ours(dist3_sample):
    """Every file GlusterFS 10 left is on the brick our hash picks from the
    layout it wrote, or that brick has a linkto file to the data."""
    bricks = dist3_sample
    checked = 0
    for d in ("", "spread"):
        for b in bricks:
            for name in os.listdir(b / d):
                path = b / d / name
                if name == ".glusterfs" or path.is_dir() or is_linkto(path):
                    continue
                h = hashed_brick(bricks, d, name)
                if bricks[h] != b:
                    assert is_linkto(bricks[h] / d / name), (d, name)
                    owner = dl.linkto_target(xget(bricks[h] / d / name, LINKTO_KEY))
                    assert owner == f"dist3-client-{bricks.index(b)}"
                checked += 1
    assert checked == 30     # f11..f30 and renamed1..renamed10
    check_volume(bricks)


async def test_glusterfs10_bricks_read_through_distribute(dist3_sample, tmp_path):
    """Our distribute serves the volume GlusterFS 10 made: one name per file,
    no linkto file shown, every file readable through its linkto."""
    copies = []
    for b in dist3_sample:
        dest = tmp_path / b.name
        subprocess.run(["cp", "-a", "--preserve=all", str(b), str(dest)], check=True)
        copies.append(dest)
    expected = set()
    for b in copies:
        expected |= {n for n in os.listdir(b / "spread") if not is_linkto(b / "spread" / n)}
    async with running(copies, name="dist3") as top:
        spread = (await top.lookup(Loc(path="/spread", pargfid=ROOT_GFID, name="spread"),
                                   None)).iatt
        names = await listing(top, spread.gfid, "/spread", size=600)
        assert sorted(names) == sorted(expected) and len(names) == len(set(names))
        for name in names:
            ia = (await top.lookup(Loc(path=f"/spread/{name}", pargfid=spread.gfid,
                                       name=name), None)).iatt
            assert ia.is_reg and stat.S_IMODE(ia.mode) == 0o644
            assert len(await read_all(top, ia.gfid)) == ia.size > 0
    check_volume(copies)


# -- placement, linkto files and namespace operations -------------------------------

async def test_files_land_on_their_hashed_brick(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        for i in range(40):
            await create_file(top, d, f"/d/file{i}", b"x")
        for i in range(40):
            h = hashed_brick(bricks, "d", f"file{i}")
            assert (bricks[h] / "d" / f"file{i}").read_bytes() == b"x"
            assert sum((b / "d" / f"file{i}").exists() for b in bricks) == 1
        # the directory's mds is its hashed brick (in the root's layout)
        mds = [i for i, b in enumerate(bricks) if xget(b / "d", MDS_KEY) is not None]
        assert mds == [hashed_brick(bricks, "", "d")]
    check_volume(bricks)


def counted_volfile(bricks) -> str:
    """distribute over posix bricks, each under an io-stats counting fops."""
    parts = []
    for i, brick in enumerate(bricks):
        parts.append(f"volume dv-posix-{i}\n    type storage/posix\n    option directory {brick}\n"
                     f"end-volume\nvolume dv-client-{i}\n    type debug/io-stats\n"
                     f"    option count-fop-hits on\n    subvolumes dv-posix-{i}\nend-volume\n")
    subs = " ".join(f"dv-client-{i}" for i in range(len(bricks)))
    return "".join(parts) + f"volume dv-dht\n    type cluster/distribute\n" \
                            f"    subvolumes {subs}\nend-volume\n"


@pytest.mark.parametrize("count", [1, 3])
async def test_a_directory_lookup_asks_each_brick_once(tmp_path, count):
    """A named lookup that finds a directory on its hashed brick does not
    ask that brick again for the directory lookup (dht_lookup_directory):
    one LOOKUP per brick, so one in all on a volume of one brick - a
    kernel's revalidation of every directory on a path costs that; the
    layout and a missing brick's heal are as before."""
    bricks = make_bricks(tmp_path, count)
    graph = Graph.from_text(counted_volfile(bricks))
    async with graph.running():
        assert await graph.wait_child_up(5)
        top = graph.top
        stats = [graph.by_name[f"dv-client-{i}"] for i in range(count)]

        def lookups() -> list[int]:
            return [s.stats()["fops"].get("LOOKUP", {}).get("hits", 0) for s in stats]
        d = await mkdir(top, ROOT_GFID, "/d")
        before = lookups()
        reply = await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        assert reply.iatt.is_dir and reply.iatt.gfid == d
        assert [a - b for a, b in zip(lookups(), before)] == [1] * count
        if count > 1:
            # a brick that lost the directory gets it back from the lookup
            missing = next(b for b in bricks if xget(b / "d", MDS_KEY) is None)
            os.rmdir(missing / "d")
            await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
            assert (missing / "d").is_dir()
    check_volume(bricks)


async def test_one_brick_names_files_without_hashing(tmp_path):
    """With one subvolume the layout is one range of every hash value:
    create, lookup and unlink find the subvolume without computing the
    name's hash (pure Python, ~6 us a name); two bricks still hash."""
    for count, hashes in ((1, 0), (2, None)):
        (tmp_path / str(count)).mkdir()
        bricks = make_bricks(tmp_path / str(count), count)
        async with running(bricks) as top:
            d = await mkdir(top, ROOT_GFID, "/d")
            calls = []
            real = top.hasher.hash
            top.hasher.hash = lambda name: calls.append(name) or real(name)
            await create_file(top, d, "/d/f", b"x")
            await top.lookup(Loc(path="/d/f", pargfid=d, name="f"), None)
            await top.unlink(Loc(path="/d/f", pargfid=d, name="f"), 0, None)
            assert len(calls) == hashes if hashes is not None else calls
            assert not any((b / "d" / "f").exists() for b in bricks)


async def test_rename_link_unlink_keep_linkto_files_right(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        a = await mkdir(top, ROOT_GFID, "/a")
        b = await mkdir(top, ROOT_GFID, "/b")
        gfids = {}
        for i in range(12):
            gfids[i] = await create_file(top, a, f"/a/f{i}", b"data%d" % i)
        for i in range(12):
            await top.rename(Loc(path=f"/a/f{i}", pargfid=a, name=f"f{i}"),
                             Loc(path=f"/b/g{i}", pargfid=b, name=f"g{i}"), None)
        check_volume(bricks)
        assert sorted(await listing(top, a, "/a")) == []
        assert sorted(await listing(top, b, "/b")) == sorted(f"g{i}" for i in range(12))
        for i in range(12):
            ia = (await top.lookup(Loc(path=f"/b/g{i}", pargfid=b, name=f"g{i}"), None)).iatt
            assert ia.gfid == gfids[i] and await read_all(top, ia.gfid) == b"data%d" % i
        # hard links: a linkto file on the new name's hashed brick
        for i in range(6):
            await top.link(Loc(path=f"/b/g{i}", pargfid=b, name=f"g{i}", gfid=gfids[i]),
                           Loc(path=f"/a/h{i}", pargfid=a, name=f"h{i}"), None)
            ia = (await top.lookup(Loc(path=f"/a/h{i}", pargfid=a, name=f"h{i}"), None)).iatt
            assert ia.gfid == gfids[i] and ia.nlink == 2
        check_volume(bricks)
        assert await errno_of(top.link(Loc(path="/b/g0", pargfid=b, name="g0"),
                                       Loc(path="/a/h0", pargfid=a, name="h0"), None)) \
            == "EEXIST"
        # renaming over an existing file replaces it, wherever both live
        await top.rename(Loc(path="/b/g7", pargfid=b, name="g7"),
                         Loc(path="/b/g8", pargfid=b, name="g8"), None)
        ia = (await top.lookup(Loc(path="/b/g8", pargfid=b, name="g8"), None)).iatt
        assert ia.gfid == gfids[7] and await read_all(top, ia.gfid) == b"data7"
        check_volume(bricks)
        # unlink takes the linkto files with the names
        for name in await listing(top, b, "/b"):
            await top.unlink(Loc(path=f"/b/{name}", pargfid=b, name=name), 0, None)
        for name in await listing(top, a, "/a"):
            await top.unlink(Loc(path=f"/a/{name}", pargfid=a, name=name), 0, None)
        for brick in bricks:
            assert os.listdir(brick / "a") == [] and os.listdir(brick / "b") == []
        await top.rmdir(Loc(path="/a", pargfid=ROOT_GFID, name="a"), 0, None)
        await top.rename(Loc(path="/b", pargfid=ROOT_GFID, name="b"),
                         Loc(path="/c", pargfid=ROOT_GFID, name="c"), None)
        assert all((brick / "c").is_dir() and not (brick / "b").exists() for brick in bricks)


async def test_min_free_disk_puts_data_elsewhere_behind_a_linkto(tmp_path):
    """With every brick short of space the data goes to the roomiest (the
    first, all being equal) and the hashed brick gets a linkto file."""
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks, min_free_disk="100%") as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        names = [f"n{i}" for i in range(20)]
        for name in names:
            await create_file(top, d, f"/d/{name}", name.encode())
        away = [n for n in names if hashed_brick(bricks, "d", n) != 0]
        assert away
        for name in names:
            assert (bricks[0] / "d" / name).read_bytes() == name.encode()
        for name in away:
            assert is_linkto(bricks[hashed_brick(bricks, "d", name)] / "d" / name)
        assert sorted(await listing(top, d, "/d")) == sorted(names)
        check_volume(bricks)
        for name in away:
            await top.unlink(Loc(path=f"/d/{name}", pargfid=d, name=name), 0, None)
            assert not any((b / "d" / name).exists() for b in bricks)


async def test_min_free_disk_by_size(tmp_path):
    bricks = make_bricks(tmp_path, 2)
    volfile = distribute_volfile(bricks, min_free_disk="1GB").replace(
        f"option directory {bricks[1]}\n",
        f"option directory {bricks[1]}\n    option shared-brick-count 1000000\n")
    graph = Graph.from_text(volfile)
    async with graph.running():
        top = graph.top
        d = await mkdir(top, ROOT_GFID, "/d")
        for i in range(10):
            await create_file(top, d, f"/d/s{i}", b"s")
            assert (bricks[0] / "d" / f"s{i}").read_bytes() == b"s"


async def test_lookup_everywhere_repairs_and_lookup_optimize(tmp_path):
    """A data file away from its hashed brick without a linkto file (as a
    crash in the middle of a rename leaves it): found by lookup-everywhere,
    which puts the linkto file back, where the directory's layout is not
    committed; not found where lookup-optimize trusts the layout - as
    GlusterFS does."""
    bricks = make_bricks(tmp_path, 3)

    async def plant(top, parent, name, data):
        where = (hashed_brick(bricks, "d" if parent != ROOT_GFID else "", name) + 1) % 3
        fd = Fd(flags=os.O_RDWR)
        await top.children[where].create(Loc(pargfid=parent, name=name),
                                         os.O_RDWR | os.O_CREAT, 0o644, 0, fd, gfid_req())
        await top.children[where].writev(fd, data, 0, 0, None)
        await top.children[where].release(fd, None)

    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")     # commit hash 0: the volume's
    assert disk_layout(bricks[0] / "d").commit_hash == 0
    async with running(bricks, lookup_optimize="off") as top:
        await plant(top, d, "x", b"planted")
        ia = (await top.lookup(Loc(path="/d/x", pargfid=d, name="x"), None)).iatt
        assert await read_all(top, ia.gfid) == b"planted"
        h = hashed_brick(bricks, "d", "x")
        assert is_linkto(bricks[h] / "d" / "x")
        await top.children[h].unlink(Loc(pargfid=d, name="x"), 0, None)
    async with running(bricks) as top:          # lookup-optimize, /d has commit hash 0
        assert await errno_of(top.lookup(Loc(path="/d/x", pargfid=d, name="x"),
                                         None)) == "ENOENT"
        # the root's layout came from self-heal (commit hash 1): a miss there
        # still looks everywhere
        await plant(top, ROOT_GFID, "r", b"root")
        ia = (await top.lookup(Loc(path="/r", pargfid=ROOT_GFID, name="r"), None)).iatt
        assert await read_all(top, ia.gfid) == b"root"
        assert is_linkto(bricks[hashed_brick(bricks, "", "r")] / "r")
    for b in bricks:                      # the lost file goes; the rest is sound
        if (b / "d" / "x").exists():
            (b / "d" / "x").unlink()
    check_volume(bricks)


async def test_stale_linkto_files_are_removed(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks, lookup_optimize="off") as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        gfid = await create_file(top, d, "/d/f", b"f")
        h = hashed_brick(bricks, "d", "f")
        stray = (h + 1) % 3
        # a leftover linkto file on a brick the name does not hash to
        await top.children[stray].mknod(
            Loc(pargfid=d, name="f"), stat.S_IFREG | stat.S_ISVTX, 0, 0,
            {"gfid-req": gfid, "glusterfs-internal-fop": "yes",
             LINKTO_KEY: dl.linkto_value(f"dv-client-{h}")})
        assert is_linkto(bricks[stray] / "d" / "f")
        assert sorted(await listing(top, d, "/d")) == ["f"]
        await top.unlink(Loc(path="/d/f", pargfid=d, name="f"), 0, None)
        with pytest.raises(FopError):
            await top.lookup(Loc(path="/d/f", pargfid=d, name="f"), None)
        assert not (bricks[stray] / "d" / "f").exists()
        # rmdir removes stale linkto files too
        await top.children[stray].mknod(
            Loc(pargfid=d, name="g"), stat.S_IFREG | stat.S_ISVTX, 0, 0,
            {"gfid-req": GFID.random(), "glusterfs-internal-fop": "yes",
             LINKTO_KEY: dl.linkto_value(f"dv-client-{h}")})
        await top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0, None)
        assert not any((b / "d").exists() for b in bricks)


async def test_rmdir_of_a_directory_not_empty_on_one_brick(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        await create_file(top, d, "/d/only", b"1")
        assert await errno_of(top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d", gfid=d),
                                        0, None)) == "ENOTEMPTY"
        assert all((b / "d").is_dir() for b in bricks)
        assert await errno_of(top.unlink(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0,
                                         None)) == "EISDIR"


# -- self-heal ----------------------------------------------------------------------------

async def test_directory_missing_on_one_brick_is_healed(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        await top.setattr(Loc(path="/d", gfid=d), Iatt(mode=0o750), fops.SET_ATTR_MODE, None)
        await top.setxattr(Loc(path="/d", gfid=d), {"user.colour": b"blue"}, 0, None)
        for i in range(10):
            await create_file(top, d, f"/d/f{i}", b"x")
    gone = 1
    data = [n for n in os.listdir(bricks[gone] / "d")]
    for name in data:
        os.unlink(bricks[gone] / "d" / name)
        # the files' handles go with them
    os.rmdir(bricks[gone] / "d")
    async with running(bricks) as top:
        ia = (await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)).iatt
        assert ia.gfid == d
        healed = bricks[gone] / "d"
        assert healed.is_dir() and GFID(xget(healed, "trusted.gfid")) == d
        assert stat.S_IMODE(os.stat(healed).st_mode) == 0o750
        assert xget(healed, "user.colour") == b"blue"
        # its range went with it: the hole gave the directory a new layout
        lay = disk_layout(healed)
        assert lay.start != lay.stop and lay.commit_hash == dl.LAYOUT_HASH_INVALID
        names = await listing(top, d, "/d")
        assert sorted(names) == sorted(f"f{i}" for i in range(10) if f"f{i}" not in data)
    ranges = sorted((disk_layout(b / "d").start, disk_layout(b / "d").stop) for b in bricks)
    assert ranges[0][0] == 0 and ranges[-1][1] == 0xFFFFFFFF


async def test_layout_hole_and_overlap_are_healed(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        e = await mkdir(top, ROOT_GFID, "/e")
    os.removexattr(bricks[2] / "d", LAYOUT_KEY)                       # a hole
    os.setxattr(bricks[0] / "e", LAYOUT_KEY,
                dl.encode_disk_layout(0, 0, 0, 0xFFFFFFFF))            # an overlap
    async with running(bricks) as top:
        for name, gfid in (("d", d), ("e", e)):
            await top.lookup(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name), None)
            layouts = [disk_layout(b / name) for b in bricks]
            assert all(lay is not None and lay.commit_hash == dl.LAYOUT_HASH_INVALID
                       for lay in layouts)
            hole_free = dl.Layout([dl.LayoutEntry(i, f"c{i}", lay.start, lay.stop)
                                   for i, lay in enumerate(layouts)])
            assert dl.anomalies(hole_free)[:2] == (0, 0)
    check_volume(bricks)


async def test_a_new_brick_gets_the_directories_then_fix_layout_gives_it_ranges(tmp_path):
    """Add a brick: lookups create the directories on it with a 0-0 layout;
    fix_layout hands it a range; migrate_file moves each file to its new
    hashed brick; the data is all there, through new and old names."""
    bricks = make_bricks(tmp_path, 3)
    contents = {}
    async with running(bricks[:2]) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        for i in range(30):
            data = os.urandom(1000 + 300 * i)
            contents[f"f{i}"] = data
            await create_file(top, d, f"/d/f{i}", data)
        await top.symlink("f1", Loc(path="/d/sym", pargfid=d, name="sym"), 0, gfid_req())
    async with running(bricks) as top:
        await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        assert (bricks[2] / "d").is_dir()
        assert disk_layout(bricks[2] / "d")[2:] == (0, 0)      # takes no part yet
        await top.set_volume_commit_hash(0x1234)
        await top.fix_layout(Loc(path="/", gfid=ROOT_GFID))
        layout = await top.fix_layout(Loc(path="/d", pargfid=ROOT_GFID, name="d", gfid=d))
        assert all(e.start != e.stop for e in layout.entries)
        check_layout = disk_layout(bricks[2] / "d")
        assert check_layout.start != check_layout.stop
        # not yet moved: still found (the old commit hash makes misses look everywhere)
        names = sorted(contents) + ["sym"]
        assert sorted(await listing(top, d, "/d")) == names
        moved = 0
        for name in names:
            moved += await top.migrate_file(Loc(path=f"/d/{name}", pargfid=d, name=name))
        assert moved > 0
        check_volume(bricks)
        for name, data in contents.items():
            h = hashed_brick(bricks, "d", name)
            assert (bricks[h] / "d" / name).read_bytes() == data
            ia = (await top.lookup(Loc(path=f"/d/{name}", pargfid=d, name=name), None)).iatt
            assert await read_all(top, ia.gfid) == data
        h = hashed_brick(bricks, "d", "sym")
        assert os.readlink(bricks[h] / "d" / "sym") == "f1"
        await top.fix_layout(Loc(path="/d", gfid=d), new_commit_hash=0x1234)
        assert disk_layout(bricks[0] / "d").commit_hash == 0x1234
        assert sorted(await listing(top, d, "/d")) == names


async def test_migration_keeps_concurrent_writes_and_open_fds(tmp_path):
    """Writers keep writing through distribute while the file moves: every
    acknowledged write is in the moved file, and fds opened before the move
    go on working after it."""
    bricks = make_bricks(tmp_path, 2)
    async with running(bricks[:1]) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        name = "big"
        gfid = await create_file(top, d, f"/d/{name}", b"\0" * (4 << 20))
    async with running(bricks) as top:
        await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        await top.fix_layout(Loc(path="/d", gfid=d))
        name2 = next(n for n in (f"mv{i}" for i in range(100))
                     if hashed_brick(bricks, "d", n) == 1)
        await top.rename(Loc(path=f"/d/{name}", pargfid=d, name=name),
                         Loc(path=f"/d/{name2}", pargfid=d, name=name2), None)
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        expected = bytearray(4 << 20)
        done = trio.Event()
        during = []

        async def writer(k):
            n = 0
            while not done.is_set() or n < 3:
                offset = ((k * 7919 + n * 104729) % ((4 << 20) - 4096)) & ~4095
                data = bytes([k + 1]) * 4096
                await top.writev(fd, data, offset, 0, None)
                expected[offset:offset + 4096] = data
                if gfid in top.migrations:
                    during.append(offset)
                n += 1
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            for k in range(3):
                nursery.start_soon(writer, k)
            assert await top.migrate_file(Loc(path=f"/d/{name2}", pargfid=d, name=name2))
            done.set()
        assert len(during) > 3          # writes landed while the data was copied
        assert not (bricks[0] / "d" / name2).exists()
        assert (bricks[1] / "d" / name2).read_bytes() == bytes(expected)
        # the fd opened before the move writes and reads the new copy
        await top.writev(fd, b"after", 0, 0, None)
        assert bytes((await top.readv(fd, 5, 0, 0, None)).data) == b"after"
        await top.release(fd, None)
        assert (bricks[1] / "d" / name2).read_bytes()[:5] == b"after"
        assert await errno_of(top.migrate_file(Loc(path="/d", pargfid=ROOT_GFID, name="d",
                                                   gfid=d))) == "EISDIR"


async def test_migration_gives_up_when_another_client_writes(tmp_path):
    """Another client (a second distribute graph on the same bricks) writes
    the file while this one migrates it: that client sees the migration's
    mark, marks the new copy written (trusted.glusterfs.protect.writes) and
    writes both copies; the migration notices and gives up rather than
    overwrite it, leaving the file where it was, with every write."""
    bricks = make_bricks(tmp_path, 2)
    async with running(bricks[:1]) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
    async with running(bricks) as top:
        await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        await top.fix_layout(Loc(path="/d", gfid=d))
    name = next(n for n in (f"v{i}" for i in range(100)) if hashed_brick(bricks, "d", n) == 1)
    fd0 = Fd(flags=os.O_RDWR)
    async with running(bricks) as mover, running(bricks) as other:
        # the data on brick 0, a linkto file on brick 1 (min-free-disk away)
        await mover.children[1].mknod(
            Loc(pargfid=d, name=name), stat.S_IFREG | stat.S_ISVTX, 0, 0,
            {"gfid-req": (g := GFID.random()), "glusterfs-internal-fop": "yes",
             LINKTO_KEY: dl.linkto_value("dv-client-0")})
        await mover.children[0].create(Loc(pargfid=d, name=name), os.O_RDWR | os.O_CREAT,
                                       0o644, 0, fd0, {"gfid-req": g})
        await mover.children[0].writev(fd0, bytes(4 << 20), 0, 0, None)
        await mover.children[0].release(fd0, None)
        ia = (await other.lookup(Loc(path=f"/d/{name}", pargfid=d, name=name), None)).iatt
        fd = Fd(gfid=ia.gfid, flags=os.O_RDWR)
        await other.open(Loc(gfid=ia.gfid), os.O_RDWR, fd, None)
        expected = bytearray(4 << 20)
        done = trio.Event()
        outcome = []

        async def migrate():
            outcome.append(await errno_of(mover.migrate_file(
                Loc(path=f"/d/{name}", pargfid=d, name=name))))
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(migrate)
            n = 0
            while not done.is_set():
                offset = (n * 1_000_003) % ((4 << 20) - 100)
                await other.writev(fd, b"w" * 100, offset, 0, None)
                expected[offset:offset + 100] = b"w" * 100
                n += 1
                await trio.sleep(0)
        await other.release(fd, None)
        assert outcome == ["EBUSY"] and n > 0
        assert (bricks[0] / "d" / name).read_bytes() == bytes(expected)
        assert stat.S_IMODE(os.stat(bricks[0] / "d" / name).st_mode) == 0o644
        assert xget(bricks[0] / "d" / name, LINKTO_KEY) is None
        assert is_linkto(bricks[1] / "d" / name)
        assert os.stat(bricks[1] / "d" / name).st_size == 0
    check_volume(bricks)


# -- readdir, statfs, xattrs ----------------------------------------------------------------

async def test_readdir_offsets_name_the_brick_and_resume(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        subdirs = [f"sub{i}" for i in range(5)]
        for name in subdirs:
            await mkdir(top, d, f"/d/{name}")
        files = [f"f{i:03}" for i in range(60)]
        for name in files:
            await create_file(top, d, f"/d/{name}")
        for plus in (True, False):
            names = await listing(top, d, "/d", size=300, plus=plus)
            assert sorted(names) == sorted(subdirs + files) and len(names) == len(set(names))
        fd = Fd(gfid=d, is_dir=True)
        await top.opendir(Loc(path="/d", gfid=d), fd, None)
        first = (await top.readdirp(fd, 300, 0, None)).entries
        index, _ = dl.deitransform(first[-1].off, 3)
        assert 0 <= index < 3
        # any entry's offset resumes right after it, also on a fresh fd
        fd2 = Fd(gfid=d, is_dir=True)
        rest = (await top.readdirp(fd2, 1 << 20, first[-1].off, None)).entries
        assert first[-1].name not in [e.name for e in rest]
        assert await errno_of(top.readdirp(fd, 100, (1 << 62) | 3, None)) == "EINVAL"
        await top.releasedir(fd, None)
        await top.releasedir(fd2, None)
    async with running(bricks, readdir_optimize="on") as top:
        assert sorted(await listing(top, d, "/d")) == sorted(subdirs + files)


async def test_statfs_is_the_sum(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    volfile = distribute_volfile(bricks)
    for b in bricks:
        volfile = volfile.replace(f"option directory {b}\n",
                                  f"option directory {b}\n    option shared-brick-count 3\n")
    graph = Graph.from_text(volfile)
    async with graph.running():
        one = (await graph.top.children[0].statfs(Loc.root(), None)).statvfs
        total = (await graph.top.statfs(Loc.root(), None)).statvfs
        assert total.blocks == 3 * one.blocks and total.files == 3 * one.files


async def test_directory_xattrs_and_internal_keys(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        loc = Loc(path="/d", gfid=d)
        await top.setxattr(loc, {"user.a": b"1"}, 0, None)
        assert all(xget(b / "d", "user.a") == b"1" for b in bricks)
        listed = (await top.getxattr(loc, None, None)).dict
        assert "user.a" in listed and LAYOUT_KEY not in listed and MDS_KEY not in listed
        assert await errno_of(top.getxattr(loc, MDS_KEY, None)) == "ENOTSUP"
        assert await errno_of(top.setxattr(loc, {LAYOUT_KEY: bytes(16)}, 0, None)) == "EPERM"
        info = (await top.getxattr(loc, "trusted.glusterfs.pathinfo", None)).dict
        text = info["trusted.glusterfs.pathinfo"]
        assert text.startswith("((<DISTRIBUTE:dv-dht>") and "dv-dht-layout" in text
        f = await create_file(top, d, "/d/f", b"x")
        assert (await top.getxattr(Loc(path="/d/f", gfid=f, pargfid=d, name="f"),
                                   "trusted.glusterfs.pathinfo", None)).dict[
            "trusted.glusterfs.pathinfo"].startswith("(<DISTRIBUTE:dv-dht> ")


async def test_ops_distribute_cannot_place_are_enotsup(tmp_path):
    bricks = make_bricks(tmp_path, 2)
    async with running(bricks) as top:
        assert await errno_of(top.icreate(Loc(gfid=GFID.random()), 0o100644, None)) == "ENOTSUP"
        assert await errno_of(top.namelink(Loc(pargfid=ROOT_GFID, name="x"), None)) \
            == "ENOTSUP"


# -- events and down bricks -------------------------------------------------------------------

async def test_child_events_are_aggregated_as_dht_notify(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    graph = Graph.from_text(distribute_volfile(bricks))
    dht = graph.top
    seen = []
    graph.root.listeners.append(lambda event, source, data: seen.append(event))
    dht.children[0].notify_parents(Event.CHILD_UP)
    dht.children[1].notify_parents(Event.CHILD_DOWN)
    assert seen == []                     # not every child has spoken
    dht.children[2].notify_parents(Event.CHILD_CONNECTING)
    assert seen == [Event.CHILD_UP]
    dht.children[0].notify_parents(Event.CHILD_DOWN)
    assert seen[-1] == Event.SOME_DESCENDENT_DOWN
    dht.children[2].notify_parents(Event.CHILD_DOWN)
    assert seen[-1] == Event.CHILD_DOWN and not graph.root.child_up


async def test_a_fop_needing_a_down_brick_is_enotconn(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        names = {hashed_brick(bricks, "d", f"n{i}"): f"n{i}" for i in range(30)}
        for name in names.values():
            await create_file(top, d, f"/d/{name}", name.encode())
        top.children[1].notify_parents(Event.CHILD_DOWN)
        down, up = names[1], names[0]
        assert await errno_of(top.lookup(Loc(path=f"/d/{down}", pargfid=d, name=down),
                                         None)) == "ENOTCONN"
        assert await errno_of(top.create(Loc(path="/d/new", pargfid=d, name="new"), 0, 0o644,
                                         0, Fd(), gfid_req())) in ("ok", "ENOTCONN")
        ia = (await top.lookup(Loc(path=f"/d/{up}", pargfid=d, name=up), None)).iatt
        assert await read_all(top, ia.gfid) == up.encode()
        assert await errno_of(top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0,
                                        None)) == "ENOTCONN"
        assert await errno_of(top.rename(Loc(path="/d", pargfid=ROOT_GFID, name="d"),
                                         Loc(path="/e", pargfid=ROOT_GFID, name="e"),
                                         None)) == "ENOTCONN"
        assert down not in await listing(top, d, "/d")
        top.children[1].notify_parents(Event.CHILD_UP)
        assert down in await listing(top, d, "/d")


# -- options and gfapi ---------------------------------------------------------------------

def test_options_are_checked(tmp_path):
    bricks = make_bricks(tmp_path, 2)
    with pytest.raises(Exception, match="decommissioned-bricks"):
        Graph.from_text(distribute_volfile(bricks, decommissioned_bricks="nosuch"))
    with pytest.raises(Exception, match="lookup-unhashed"):
        Graph.from_text(distribute_volfile(bricks, lookup_unhashed="sometimes"))
    graph = Graph.from_text(distribute_volfile(bricks, decommissioned_bricks="dv-client-1"))
    assert graph.top.decommissioned == {1}
    with pytest.raises(FopError):
        graph.top.reconfigure({"xattr-name": "trusted.other"})


async def test_through_gfapi_as_a_user(tmp_path):
    """Ownership and modes through gfapi as an unprivileged caller: the
    linkto files are made as root and given the file's owner."""
    bricks = make_bricks(tmp_path, 3)
    graph = Graph.from_text(distribute_volfile(bricks))
    async with AsyncVolume(graph) as vol:
        await vol.mkdir("/u", 0o777)
        vol.setfsuid(4321)
        vol.setfsgid(8765)
        for i in range(6):
            async with await vol.fopen(f"/u/f{i}", "w") as f:
                await f.write(b"mine")
            await vol.rename(f"/u/f{i}", f"/u/g{i}")
        for i in range(6):
            st = await vol.stat(f"/u/g{i}")
            assert (st.st_uid, st.st_gid) == (4321, 8765)
        assert sorted(await vol.listdir("/u")) == [f"g{i}" for i in range(6)]
    for b in bricks:
        for name in os.listdir(b / "u"):
            st = os.lstat(b / "u" / name)
            assert (st.st_uid, st.st_gid) == (4321, 8765)
    check_volume(bricks)


async def test_more_options(tmp_path):
    """use-readdirp off (each name from its hashed brick), unhashed-sticky-bit,
    lookup-unhashed off, randomize-hash-range-by-gfid, extra-hash-regex."""
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        for i in range(10):
            await create_file(top, d, f"/d/f{i}", b"f")
        for i in range(5):
            await top.rename(Loc(path=f"/d/f{i}", pargfid=d, name=f"f{i}"),
                             Loc(path=f"/d/g{i}", pargfid=d, name=f"g{i}"), None)
    names = sorted([f"g{i}" for i in range(5)] + [f"f{i}" for i in range(5, 10)])
    away = next(n for n in names
                if not (bricks[hashed_brick(bricks, "d", n)] / "d" / n).stat().st_size)
    async with running(bricks, use_readdirp="off", unhashed_sticky_bit="on") as top:
        assert sorted(await listing(top, d, "/d", plus=False)) == names
        ia = (await top.lookup(Loc(path=f"/d/{away}", pargfid=d, name=away), None)).iatt
        assert ia.mode & stat.S_ISVTX
    h = hashed_brick(bricks, "d", away)
    os.unlink(bricks[h] / "d" / away)              # the linkto file is lost
    async with running(bricks, lookup_optimize="off", lookup_unhashed="off") as top:
        assert await errno_of(top.lookup(Loc(path=f"/d/{away}", pargfid=d, name=away),
                                         None)) == "ENOENT"
    async with running(bricks, lookup_optimize="off") as top:      # lookup-unhashed on
        await top.lookup(Loc(path=f"/d/{away}", pargfid=d, name=away), None)
        assert is_linkto(bricks[h] / "d" / away)
    async with running(bricks, randomize_hash_range_by_gfid="on") as top:
        e = await mkdir(top, ROOT_GFID, "/e")
        start = dl.NameHasher().hash(str(e)) % 3
        names3 = sorted(f"dv-client-{i}" for i in range(3))
        assert disk_layout(bricks[int(names3[start][-1])] / "e").start == 0
    check_volume(bricks)
    async with running(bricks, extra_hash_regex=r'"^(.+)\\.tmp$"') as top:
        e = (await top.lookup(Loc(path="/e", pargfid=ROOT_GFID, name="e"), None)).iatt.gfid
        await create_file(top, e, "/e/data.tmp", b"t")
        assert (bricks[hashed_brick(bricks, "e", "data")] / "e" / "data.tmp").read_bytes() \
            == b"t"


async def test_put_copy_file_range_and_fsyncdir(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        reply = await top.put(Loc(path="/d/p", pargfid=d, name="p"), 0o644, 0, 0, b"put data",
                              0, {"user.k": b"v"}, gfid_req())
        assert await read_all(top, reply.iatt.gfid) == b"put data"
        assert (bricks[hashed_brick(bricks, "d", "p")] / "d" / "p").read_bytes() == b"put data"
        by_brick = {}
        for i in range(30):
            by_brick.setdefault(hashed_brick(bricks, "d", f"c{i}"), []).append(f"c{i}")
        same = next(v for v in by_brick.values() if len(v) >= 2)
        other = next(v for k, v in by_brick.items() if v is not same)
        fds = {}
        for name in (same[0], same[1], other[0]):
            g = await create_file(top, d, f"/d/{name}", b"0123456789" if name == same[0]
                                  else b"")
            fds[name] = Fd(gfid=g, flags=os.O_RDWR)
            await top.open(Loc(gfid=g), os.O_RDWR, fds[name], None)
        copied = await top.copy_file_range(fds[same[0]], 0, fds[same[1]], 0, 10, 0, None)
        assert copied.count == 10
        assert bytes((await top.readv(fds[same[1]], 10, 0, 0, None)).data) == b"0123456789"
        # across two bricks the empty destination first moves beside the
        # source (a linkto file where it hashes), and that brick copies
        copied = await top.copy_file_range(fds[same[0]], 2, fds[other[0]], 1, 100, 0, None)
        assert copied.count == 8 and copied.postbuf_dst.size == 9
        brick = bricks[hashed_brick(bricks, "d", same[0])]
        assert (brick / "d" / other[0]).read_bytes() == b"\x0023456789"
        assert is_linkto(bricks[hashed_brick(bricks, "d", other[0])] / "d" / other[0])
        assert await errno_of(top.copy_file_range(fds[same[0]], 0, fds[other[0]], 0, 10, 1,
                                                  None)) == "EINVAL"
        for fd in fds.values():
            await top.release(fd, None)
        dfd = Fd(gfid=d, is_dir=True)
        await top.opendir(Loc(path="/d", gfid=d), dfd, None)
        await top.fsyncdir(dfd, 0, None)
        await top.releasedir(dfd, None)


async def test_regression_fstat_of_a_directory_removed_while_open(tmp_path):
    """A directory fd keeps answering after rmdir, as on a local filesystem
    (the fd fops used to resolve the gfid again and got ENOENT)."""
    bricks = make_bricks(tmp_path, 3)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        fd = Fd(gfid=d, is_dir=True)
        await top.opendir(Loc(path="/d", gfid=d), fd, None)
        await top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0, None)
        assert (await top.fstat(fd, None)).iatt.is_dir
        assert await listing(top, ROOT_GFID, "/") == []
        await top.releasedir(fd, None)


def test_glusterfs10_client_volfile_section_loads(tmp_path):
    """The cluster/distribute section glusterd 10.3 writes (with
    lock-migration and force-migration) loads as it is."""
    text = (SAMPLES.parent / "volfiles" / "dist3.tcp-fuse.vol").read_text()
    section = text[text.index("volume dist3-dht"):]
    section = section[:section.index("end-volume") + len("end-volume")] + "\n"
    bricks = make_bricks(tmp_path, 3)
    clients = "".join(f"volume dist3-client-{i}\n    type storage/posix\n"
                      f"    option directory {b}\nend-volume\n" for i, b in enumerate(bricks))
    dht = Graph.from_text(clients + section).top
    assert (dht.opts.lock_migration, dht.opts.force_migration) == (False, False)


def locked_bricks_volfile(bricks, **options) -> str:
    """Bricks with features/locks over storage/posix, as a brick graph has."""
    text = distribute_volfile(bricks, **options)
    for i, b in enumerate(bricks):
        text = text.replace(
            f"volume dv-client-{i}\n    type storage/posix\n    option directory {b}\n"
            f"end-volume\n",
            f"volume dv-posix-{i}\n    type storage/posix\n    option directory {b}\n"
            f"end-volume\nvolume dv-client-{i}\n    type features/locks\n"
            f"    subvolumes dv-posix-{i}\nend-volume\n")
    return text


@pytest.mark.parametrize("lock_migration", ["off", "on"])
async def test_files_with_posix_locks_and_lock_migration(tmp_path, lock_migration):
    """Without lock-migration a file holding POSIX locks stays where it is
    (GlusterFS's __is_file_migratable); with it, the locks go along."""
    bricks = make_bricks(tmp_path, 2)
    graph = Graph.from_text(locked_bricks_volfile(bricks[:1]))
    async with graph.running():
        d = await mkdir(graph.top, ROOT_GFID, "/d")
    graph = Graph.from_text(locked_bricks_volfile(bricks, lock_migration=lock_migration))
    async with graph.running():
        top = graph.top
        await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)
        await top.fix_layout(Loc(path="/d", gfid=d))
        # a file on the old brick whose name now hashes to the new one
        name = next(n for n in (f"l{i}" for i in range(200))
                    if hashed_brick(bricks, "d", n) == 1)
        await top.children[0].children[0].create(
            Loc(pargfid=d, name=name), os.O_RDWR | os.O_CREAT, 0o644, 0, Fd(), gfid_req())
        gfid = (await top.lookup(Loc(path=f"/d/{name}", pargfid=d, name=name), None)).iatt.gfid
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        token = fops.caller.set(fops.Caller(lk_owner=b"owner-1"))
        try:
            await top.lk(fd, fops.LockCmd.SETLK,
                         fops.Flock(type=fops.LockType.WRLCK, start=0, len=10,
                                    owner=b"owner-1"), None)
            moved = await top.migrate_file(Loc(path=f"/d/{name}", pargfid=d, name=name))
        finally:
            fops.caller.reset(token)
        if lock_migration == "off":
            assert not moved and (bricks[0] / "d" / name).exists()
        else:
            assert moved and not (bricks[0] / "d" / name).exists()
            carried = await top.children[1].getactivelk(Loc(gfid=gfid), None)
            assert [(lk.flock.start, lk.flock.len) for lk in carried.locks] == [(0, 10)]
        await top.release(fd, None)


async def test_migration_reads_a_file_without_holes_straight_through(tmp_path):
    """A file with no holes is copied without SEEK_DATA/SEEK_HOLE (as
    GlusterFS copies it), over several blocks and a short last one; a file
    with holes is still copied segment by segment and keeps its holes;
    both keep their data, mode and times (owner, mode and times now go in
    one fsetattr)."""
    from xlators.cluster.distribute.migrate import BLOCK
    bricks = make_bricks(tmp_path, 2)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        dense = os.urandom(2 * BLOCK + 12345)
        await create_file(top, d, "/d/dense", dense, mode=0o640)
        sgfid = await create_file(top, d, "/d/sparse", b"head", mode=0o600)
        fd = Fd(gfid=sgfid, flags=os.O_RDWR)
        await top.open(Loc(gfid=sgfid), os.O_RDWR, fd, None)
        await top.writev(fd, b"tail", 3 * BLOCK, 0, None)
        await top.release(fd, None)
        seeks = []
        for child in top.children:
            def counted(*args, _seek=child.seek):
                seeks.append(args)
                return _seek(*args)
            child.seek = counted
        for name in ("dense", "sparse"):
            loc = Loc(path=f"/d/{name}", pargfid=d, name=name)
            await top.setattr(loc, Iatt(atime=1_000_000_000, mtime=1_000_000_000),
                              fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME, None)
            h = hashed_brick(bricks, "d", name)
            seeks.clear()
            assert await top.migrate_file(loc, to=1 - h)
            path = bricks[1 - h] / "d" / name
            st = path.stat()
            assert st.st_mtime == 1_000_000_000
            if name == "dense":
                assert seeks == []
                assert path.read_bytes() == dense
                assert stat.S_IMODE(st.st_mode) == 0o640
            else:
                assert seeks, "a sparse file is copied by its data segments"
                assert path.read_bytes() == b"head" + bytes(3 * BLOCK - 4) + b"tail"
                with open(path, "rb") as f:
                    assert os.lseek(f.fileno(), 0, os.SEEK_HOLE) < 3 * BLOCK
                assert stat.S_IMODE(st.st_mode) == 0o600
            assert is_linkto(bricks[h] / "d" / name)
