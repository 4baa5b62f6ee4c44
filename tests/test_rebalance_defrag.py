"""The rebalance crawl (glusterpy/rebalance/defrag.py) on local graphs of
storage/posix bricks - no processes, no network: fix-layout, migration of
every file whose hashed brick changed, per-node ownership of files,
decommissioned bricks drained, the free-space rule (on tmpfs bricks of
different sizes), stop, settled commit hashes and the counters.

Each brick's storage/posix carries `glusterd-uuid`, so the bricks answer
trusted.glusterfs.node-uuid as glusterpyd's bricks do and the crawl finds
its node's subvolumes the way GlusterFS's rebalance process does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import ROOT_GFID, FopError, Loc
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph
from glusterpy.rebalance.defrag import Cmd, Defrag, Status, local_subvolumes
from xlators.cluster.distribute.common import rebalance_thread_count

from sparse_support import SPARSE_SIZE, assert_sparse_copy, data_extents, sparse_chunks, sparse_content
from test_distribute import check_volume, disk_layout, hashed_brick, is_linkto, make_bricks

NODE_A = "aaaaaaaa-0000-4000-8000-000000000001"
NODE_B = "bbbbbbbb-0000-4000-8000-000000000002"
COMMIT = 0x5A5A0001


def volfile(bricks, nodes=None, name="rv", **dht_options) -> str:
    """posix bricks NAME-client-N (with their node's uuid) under NAME-dht."""
    nodes = nodes or [NODE_A] * len(bricks)
    parts = [f"volume {name}-client-{i}\n    type storage/posix\n"
             f"    option directory {b}\n    option glusterd-uuid {nodes[i]}\nend-volume\n"
             for i, b in enumerate(bricks)]
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in dht_options.items())
    subs = " ".join(f"{name}-client-{i}" for i in range(len(bricks)))
    parts.append(f"volume {name}-dht\n    type cluster/distribute\n{opts}"
                 f"    subvolumes {subs}\nend-volume\n")
    return "".join(parts)


#: what glusterd gives the rebalance process (--xlator-option *dht.*)
REBALANCE_OPTIONS = {"readdir_optimize": "on", "lookup_unhashed": "yes", "use_readdirp": "off"}


@contextlib.asynccontextmanager
async def dht_graph(bricks, nodes=None, **options):
    graph = Graph.from_text(volfile(bricks, nodes, **{**REBALANCE_OPTIONS, **options}))
    async with graph.running():
        assert await graph.wait_child_up(5)
        yield graph.top


async def populate(bricks, files=40, dirs=("", "a", "a/b", "c")) -> dict[str, bytes]:
    """Files in a few directories (some renamed, so linkto files exist)."""
    contents: dict[str, bytes] = {}
    async with AsyncVolume(Graph.from_text(volfile(bricks))) as v:
        for d in dirs:
            if d:
                await v.makedirs("/" + d, exist_ok=True)
        for n in range(files):
            d = dirs[n % len(dirs)]
            path = f"{d}/f{n}".lstrip("/")
            data = os.urandom(500 + 97 * n)
            async with await v.fopen("/" + path, "w") as f:
                await f.write(data)
            contents[path] = data
        for n in range(0, files, 7):
            old = [p for p in contents if p.endswith(f"/f{n}") or p == f"f{n}"][0]
            new = old.rsplit("/", 1)[0] + f"/renamed{n}" if "/" in old else f"renamed{n}"
            await v.rename("/" + old, "/" + new)
            contents[new] = contents.pop(old)
    return contents


async def read_tree(bricks, nodes=None) -> dict[str, bytes]:
    out = {}
    async with AsyncVolume(Graph.from_text(volfile(bricks, nodes))) as v:
        async for dirpath, _dirs, files in v.walk("/"):
            for name in files:
                path = os.path.join(dirpath, name)
                async with await v.fopen(path, "rb") as f:
                    out[path.lstrip("/")] = await f.read()
    return out


def placed_on_hashed(bricks, contents) -> int:
    """How many files have their data on their hashed brick."""
    ok = 0
    for path in contents:
        d, _, name = path.rpartition("/")
        h = hashed_brick(bricks, d, name)
        p = bricks[h] / d / name
        ok += p.exists() and not is_linkto(p)
    return ok


async def test_add_brick_then_rebalance_moves_what_hashes_elsewhere(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    contents = await populate(bricks[:2])
    async with dht_graph(bricks) as dht:
        defrag = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
        snap = defrag.snapshot()
    check_volume(bricks)
    assert placed_on_hashed(bricks, contents) == len(contents)
    # the new brick took a share, counted as moved
    on_new = [p for p in contents if (bricks[2] / p).exists() and not is_linkto(bricks[2] / p)]
    assert on_new and snap["files"] >= len(on_new)
    assert snap["size"] >= sum(len(contents[p]) for p in on_new)
    assert snap["status"] == "completed" and snap["failures"] == 0 and snap["skipped"] == 0
    assert snap["lookups"] >= len(contents) and snap["dirs"] == 4
    assert snap["total-files"] == len(contents) and snap["progress"] == 1.0
    assert snap["local-subvolumes"] == ["rv-client-0", "rv-client-1", "rv-client-2"]
    # commit hashes: the roots carry the volume's, every directory is settled
    for b in bricks:
        assert int.from_bytes(os.getxattr(b, "trusted.glusterfs.dht.commithash"), "big") \
            == COMMIT
        for d in ("", "a", "a/b", "c"):
            assert disk_layout(b / d).commit_hash == COMMIT, (b, d)
    assert await read_tree(bricks) == contents


async def test_fix_layout_only_moves_nothing_and_keeps_misses_looking_everywhere(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    contents = await populate(bricks[:2], files=24)
    before = {p: [i for i, b in enumerate(bricks) if (b / p).exists()] for p in contents}
    async with dht_graph(bricks) as dht:
        defrag = Defrag(dht, Cmd.START_LAYOUT_FIX, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
        snap = defrag.snapshot()
    assert snap["status"] == "fix-layout completed" and snap["files"] == 0
    assert snap["dirs"] == 4 and snap["total-dirs"] == 4
    after = {p: [i for i, b in enumerate(bricks) if (b / p).exists()] for p in contents}
    assert after == before
    for d in ("", "a", "a/b", "c"):
        lay = disk_layout(bricks[2] / d)
        assert lay.start != lay.stop                      # the new brick has a range
        # not settled: a fix-layout leaves the commit hash alone (misses look everywhere)
        assert all(disk_layout(b / d).commit_hash != COMMIT for b in bricks)
    assert await read_tree(bricks) == contents


async def test_two_nodes_share_the_work_and_never_move_the_same_file(tmp_path):
    """Bricks 0 and 2 are node A's, 1 and 3 node B's: each node's crawl
    moves only files whose data is on its own bricks, and each settles only
    its bricks' layout entries - the layouts are trusted once both did."""
    bricks = make_bricks(tmp_path, 4)
    nodes = [NODE_A, NODE_B, NODE_A, NODE_B]
    contents = await populate(bricks[:2], files=48)
    source = {p: next(i for i in (0, 1) if (bricks[i] / p).exists()
                      and not is_linkto(bricks[i] / p)) for p in contents}
    async with dht_graph(bricks, nodes) as dht_a, dht_graph(bricks, nodes) as dht_b:
        a = Defrag(dht_a, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        b = Defrag(dht_b, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_B)
        assert (await local_subvolumes(dht_a, NODE_A))[0] == [0, 2]
        assert (await local_subvolumes(dht_b, NODE_B))[0] == [1, 3]
        assert await a.run() == Status.COMPLETE
        # after A alone: B's bricks' entries are unsettled, so nothing is trusted yet
        assert {disk_layout(bricks[1] / "a").commit_hash,
                disk_layout(bricks[0] / "a").commit_hash} != {COMMIT}
        assert await b.run() == Status.COMPLETE
    moved_a, moved_b = a.snapshot()["files"], b.snapshot()["files"]
    from_a = sum(1 for p in contents if source[p] == 0 and not (bricks[0] / p).exists()
                 or source[p] == 0 and is_linkto(bricks[0] / p))
    from_b = sum(1 for p in contents if source[p] == 1 and not (bricks[1] / p).exists()
                 or source[p] == 1 and is_linkto(bricks[1] / p))
    assert (moved_a, moved_b) == (from_a, from_b) and moved_a > 0 and moved_b > 0
    assert a.snapshot()["lookups"] + b.snapshot()["lookups"] >= len(contents)
    check_volume(bricks)
    assert placed_on_hashed(bricks, contents) == len(contents)
    for b_ in bricks:
        assert disk_layout(b_ / "a").commit_hash == COMMIT
    assert await read_tree(bricks, nodes) == contents


async def test_replica_style_subvolume_is_shared_by_gfid_hash(tmp_path):
    """gf_defrag_should_i_migrate: a subvolume with bricks of two nodes
    gives each file to one of them by the hash of its gfid."""
    bricks = make_bricks(tmp_path, 2)
    async with dht_graph(bricks) as dht:
        a = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        b = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_B)
        for d in (a, b):
            d.local, d.node_uuids = [0], {0: [NODE_A, NODE_B]}
        from glusterpy.fops import GFID
        gfids = [GFID.random() for _ in range(200)]
        mine_a = [g for g in gfids if a.should_i_migrate(0, g)]
        mine_b = [g for g in gfids if b.should_i_migrate(0, g)]
        assert sorted(mine_a + mine_b, key=bytes) == sorted(gfids, key=bytes)
        assert 50 < len(mine_a) < 150
        # a node that is down: the first one up takes its share
        a.node_uuids = b.node_uuids = {0: [None, NODE_B]}
        assert not any(a.should_i_migrate(0, g) for g in gfids)
        assert all(b.should_i_migrate(0, g) for g in gfids)


async def test_decommissioned_brick_is_drained(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    contents = await populate(bricks, files=36)
    assert any((bricks[1] / p).exists() and not is_linkto(bricks[1] / p) for p in contents)
    async with dht_graph(bricks, decommissioned_bricks="rv-client-1") as dht:
        defrag = Defrag(dht, Cmd.START_FORCE, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
        assert defrag.snapshot()["failures"] == 0
    leftovers = [p for p in (bricks[1]).rglob("*") if p.is_file() and
                 ".glusterfs" not in p.parts]
    assert all(is_linkto(p) for p in leftovers), leftovers
    # without the brick the volume holds everything
    assert await read_tree([bricks[0], bricks[2]]) == contents


async def test_hard_links_on_a_brick_being_removed_count_as_failures(tmp_path):
    bricks = make_bricks(tmp_path, 2)
    async with AsyncVolume(Graph.from_text(volfile(bricks))) as v:
        n = 0
        while True:        # a file whose data is on brick 1
            async with await v.fopen(f"/h{n}", "w") as f:
                await f.write(b"linked")
            if (bricks[1] / f"h{n}").exists():
                break
            n += 1
        await v.link(f"/h{n}", f"/h{n}.second")
    async with dht_graph(bricks, decommissioned_bricks="rv-client-1") as dht:
        defrag = Defrag(dht, Cmd.START_FORCE, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
        snap = defrag.snapshot()
    assert snap["failures"] >= 1 and snap["skipped"] == 0
    assert (bricks[1] / f"h{n}").read_bytes() == b"linked"


async def test_stop_ends_the_run_with_the_file_in_hand_finished(tmp_path):
    bricks = make_bricks(tmp_path, 3)
    contents = await populate(bricks[:2], files=60)
    async with dht_graph(bricks, rebal_throttle="lazy") as dht:
        defrag = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(defrag.run)
            while defrag.counters.files < 2:
                await trio.sleep(0.01)
            defrag.stop()
        assert defrag.status == Status.STOPPED
        snap = defrag.snapshot()
    assert snap["status"] == "stopped" and 2 <= snap["files"] < 60
    # nothing half-moved: one data copy of each file, no migration marks
    for path in contents:
        copies = [b / path for b in bricks if (b / path).exists() and not is_linkto(b / path)]
        assert len(copies) == 1, (path, copies)
        assert not os.stat(copies[0]).st_mode & 0o3000
    assert await read_tree(bricks) == contents


def _tmpfs(path, size: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")


async def test_files_are_not_moved_to_a_fuller_brick_unless_forced(tmp_path):
    """Brick 0: a roomy tmpfs holding the files; brick 1: a small tmpfs
    mostly filled.  `start` skips the files whose new brick would end with
    less free space; `start force` moves them (min-free-disk still holds)."""
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root")
    b0, b1 = tmp_path / "big", tmp_path / "small"
    _tmpfs(b0, "64m")
    _tmpfs(b1, "16m")
    try:
        contents = await populate([b0], files=12, dirs=("",))
        (b1 / "filler").write_bytes(b"\0" * (12 << 20))       # 75% used, 25% free
        async with dht_graph([b0, b1]) as dht:
            defrag = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
            assert await defrag.run() == Status.COMPLETE
            snap = defrag.snapshot()
            assert snap["files"] == 0 and snap["skipped"] > 0
            # skipped files keep their directory unsettled: misses look everywhere
            assert disk_layout(b0).commit_hash != COMMIT
            forced = Defrag(dht, Cmd.START_FORCE, commit_hash=COMMIT + 8, node_uuid=NODE_A)
            assert await forced.run() == Status.COMPLETE
            assert forced.snapshot()["files"] == snap["skipped"]
        os.unlink(b1 / "filler")
        assert await read_tree([b0, b1]) == contents
    finally:
        for b in (b0, b1):
            subprocess.run(["umount", str(b)], capture_output=True)


async def test_a_brick_down_fails_the_run(tmp_path):
    bricks = make_bricks(tmp_path, 2)
    await populate(bricks[:1], files=4, dirs=("",))
    graph = Graph.from_text(volfile(bricks))
    async with graph.running():
        assert await graph.wait_child_up(5)
        dht = graph.top
        from glusterpy.xlator import Event
        dht.notify(Event.CHILD_DOWN, dht.children[1])
        defrag = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.FAILED
        assert "is down" in defrag.snapshot()["error"]


async def test_progress_and_the_estimate(tmp_path):
    """The share done is bytes scanned over bytes counted on the local
    bricks; the estimate divides what is left by the rate so far, once the
    run is 10 s old."""
    import time
    async with dht_graph(make_bricks(tmp_path, 2)) as dht:
        d = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        assert d.progress() is None and d.time_left() is None
        d.status = Status.STARTED
        d.counters.total_size, d.counters.size_processed = 4000, 1000
        d._started_at = time.monotonic() - 20
        assert d.progress() == 0.25
        assert 59 < d.time_left() < 61
        d._started_at = time.monotonic() - 5
        assert d.time_left() is None
        d.counters.size_processed = 5000          # files created meanwhile
        assert d.progress() == 0.999
        fix = Defrag(dht, Cmd.START_LAYOUT_FIX, commit_hash=COMMIT, node_uuid=NODE_A)
        fix.status = Status.STARTED
        fix.counters.total_dirs, fix.counters.dirs = 10, 5
        assert fix.progress() == 0.5
        assert fix.snapshot()["status"] == "fix-layout in progress"


async def test_migration_keeps_a_sparse_files_holes(tmp_path):
    """A 64 MiB file with three 1 MiB data extents is moved off a
    decommissioned brick: on its new brick it has the same content and
    the same data extents, and allocates about 3 MiB (migrate copies
    SEEK_DATA/SEEK_HOLE extents only)."""
    bricks = make_bricks(tmp_path, 2)
    async with AsyncVolume(Graph.from_text(volfile(bricks))) as v:
        async with await v.fopen("/sparse", "w") as f:
            for off, data in sparse_chunks():
                await f.pwrite(data, off)
            await f.ftruncate(SPARSE_SIZE)
    src = next(i for i, b in enumerate(bricks) if (b / "sparse").exists())
    dst = 1 - src
    assert_sparse_copy(bricks[src] / "sparse")
    before = data_extents(bricks[src] / "sparse")
    async with dht_graph(bricks, decommissioned_bricks=f"rv-client-{src}") as dht:
        defrag = Defrag(dht, Cmd.START_FORCE, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
        assert defrag.snapshot()["failures"] == 0 and defrag.snapshot()["files"] == 1
    moved = bricks[dst] / "sparse"
    assert not is_linkto(moved)
    assert_sparse_copy(moved)
    assert data_extents(moved) == before
    assert await read_tree([bricks[dst]]) == {"sparse": sparse_content()}


def delayed_volfile(bricks, delay_usec: int, name="rv", **dht_options) -> str:
    """volfile()'s graph with a debug/delay-gen under distribute on every
    brick, each fop delayed: a round trip of `delay_usec`."""
    parts = []
    for i, b in enumerate(bricks):
        parts.append(f"volume {name}-posix-{i}\n    type storage/posix\n"
                     f"    option directory {b}\n    option glusterd-uuid {NODE_A}\nend-volume\n")
        parts.append(f"volume {name}-client-{i}\n    type debug/delay-gen\n"
                     f"    option delay-percentage 100\n    option delay-duration {delay_usec}\n"
                     f"    option enable {','.join(sorted(fops.BY_NAME))}\n"
                     f"    subvolumes {name}-posix-{i}\nend-volume\n")
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n"
                   for k, v in {**REBALANCE_OPTIONS, **dht_options}.items())
    subs = " ".join(f"{name}-client-{i}" for i in range(len(bricks)))
    parts.append(f"volume {name}-dht\n    type cluster/distribute\n{opts}"
                 f"    subvolumes {subs}\nend-volume\n")
    return "".join(parts)


class TimedDefrag(Defrag):
    """A Defrag that notes how long each file it moved took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moved_seconds: list[float] = []

    async def _migrate(self, item) -> None:
        before = self.counters.files
        start = trio.current_time()
        await super()._migrate(item)
        if self.counters.files > before:
            self.moved_seconds.append(trio.current_time() - start)


async def delayed_rebalance(tmp_path, delay: float, sizes: dict[str, int]) -> TimedDefrag:
    """Files of `sizes` written to two bricks, a third added and rebalanced
    with every brick call delayed by `delay` (lazy throttle); checks the
    result and gives the finished defrag (its moved_seconds)."""
    bricks = make_bricks(tmp_path, 3)
    contents = {}
    async with AsyncVolume(Graph.from_text(volfile(bricks[:2]))) as v:
        for name, size in sizes.items():
            contents[name] = os.urandom(size)
            async with await v.fopen(f"/{name}", "w") as f:
                await f.write(contents[name])
    graph = Graph.from_text(delayed_volfile(bricks, int(delay * 1e6), rebal_throttle="lazy"))
    async with graph.running():
        assert await graph.wait_child_up(5)
        defrag = TimedDefrag(graph.top, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
    check_volume(bricks)
    assert placed_on_hashed(bricks, contents) == len(contents)
    assert await read_tree(bricks) == contents
    return defrag


async def test_a_file_moves_in_few_round_trips(tmp_path):
    """Each call to a brick delayed by 40 ms (a round trip): a file of 256 KiB
    moved by the crawl waits on 12 round trips - the name's lookups on its
    two bricks with the free-space look, the destination made while the
    source is opened, its owner and size while the source gets phase 1's
    linkto xattr, phase 1's mode, a read,
    a write, the switch's look at both copies and the source's xattrs, their
    copy, the fsync with the attributes, phase 2, the old copy emptied while
    the new one loses its linkto xattr, the unlink with the releases (17
    allowed: the machine's load adds).  Before: 25 - the crawl looked each
    name up through distribute, which missed on the new brick, looked
    everywhere and made a linkto file there, and the copy and the switch
    went one call at a time."""
    delay = 0.040
    defrag = await delayed_rebalance(tmp_path, delay, {f"g{n}": 256 << 10 for n in range(12)})
    assert len(defrag.moved_seconds) >= 3
    trips = sorted(s / delay for s in defrag.moved_seconds)
    assert trips[len(trips) // 2] < 17, trips


async def test_a_stale_placement_moves_nothing(tmp_path):
    """The crawl's placement comes from a listing: when the brick it names
    holds only the name's linkto file by the time the file is migrated, the
    migration stops (ESTALE) before it changes anything - it does not copy
    the empty linkto file over the name."""
    bricks = make_bricks(tmp_path, 3)
    async with AsyncVolume(Graph.from_text(volfile(bricks))) as v:
        async with await v.fopen("/x", "w") as f:
            await f.write(b"data" * 1000)
        data_brick = next(i for i, b in enumerate(bricks) if (b / "x").exists())
        # a name hashed to another brick: the data stays, a linkto file points at it
        name = next(f"y{n}" for n in range(1000)
                    if hashed_brick(bricks, "", f"y{n}") != data_brick)
        await v.rename("/x", "/" + name)
    link_brick = hashed_brick(bricks, "", name)
    assert is_linkto(bricks[link_brick] / name)
    other = ({0, 1, 2} - {data_brick, link_brick}).pop()
    async with dht_graph(bricks) as dht:
        loc = Loc(path="/" + name, pargfid=ROOT_GFID, name=name)
        ia = (await dht.lookup(loc, None)).iatt
        with pytest.raises(FopError) as e:
            await dht.migrate_file(Loc(path=loc.path, pargfid=ROOT_GFID, name=name,
                                       gfid=ia.gfid), placement=(other, link_brick, ia))
    assert e.value.errno == errno.ESTALE
    assert not (bricks[other] / name).exists()
    assert is_linkto(bricks[link_brick] / name)
    assert (bricks[data_brick] / name).read_bytes() == b"data" * 1000


async def test_a_large_file_is_copied_several_blocks_at_a_time(tmp_path):
    """A 6 MiB file (and 100 bytes) moves with up to four 1 MiB blocks read,
    then written, at once: its copy waits on 2 round trips per 4 MiB and a
    look for a client's write between windows, 17 round trips in all with
    the 12 of every file (22 allowed; one block at a time: 3 per block, 33)."""
    delay = 0.040
    defrag = await delayed_rebalance(tmp_path, delay,
                                     {f"big{n}": (6 << 20) + 100 for n in range(6)})
    assert defrag.moved_seconds
    trips = sorted(s / delay for s in defrag.moved_seconds)
    assert trips[len(trips) // 2] < 22, trips


async def test_files_left_in_place_get_a_linkto_file_on_their_hashed_brick(tmp_path):
    """Hard-linked files are not moved; each one off its hashed brick gets a
    linkto file there, the state GlusterFS's crawl leaves (it looks every
    entry up through distribute)."""
    bricks = make_bricks(tmp_path, 3)
    async with AsyncVolume(Graph.from_text(volfile(bricks[:2]))) as v:
        for n in range(12):
            async with await v.fopen(f"/h{n}", "w") as f:
                await f.write(b"x" * n)
            await v.link(f"/h{n}", f"/h{n}.link")
    async with dht_graph(bricks) as dht:
        defrag = Defrag(dht, Cmd.START, commit_hash=COMMIT, node_uuid=NODE_A)
        assert await defrag.run() == Status.COMPLETE
    off_hashed = [f"h{n}" for n in range(12) if hashed_brick(bricks, "", f"h{n}") == 2]
    assert off_hashed and defrag.counters.skipped >= len(off_hashed)
    for name in off_hashed:
        assert is_linkto(bricks[2] / name), name
    check_volume(bricks)


@pytest.mark.parametrize("text,cores,count", [
    ("lazy", 8, 1), ("normal", 8, 2), ("Aggressive", 2, 4), ("aggressive", 16, 12),
    (None, 8, 2), ("1", 2, 1), ("2", 2, 2), ("16", 16, 16)])
def test_rebal_throttle_words_and_numbers(text, cores, count):
    assert rebalance_thread_count(text, cores) == count


@pytest.mark.parametrize("text", ["0", "-1", "3", "fast", "1.5", ""])
def test_rebal_throttle_refuses_what_glusterfs_refuses(text):
    with pytest.raises(ValueError, match="number of rebalance threads should be"):
        rebalance_thread_count(text, 2)
