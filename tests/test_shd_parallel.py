"""The self-heal daemon's parallel heals and resumable full sweep (in process).

``shd-max-threads`` heal jobs at once, ``shd-wait-qlength`` entries waiting
(xlators/cluster/replicate/crawl.py's HealQueue), heals of one gfid never
overlapping (GfidGuard), and a full sweep that continues where a stopped
daemon left it (SweepPosition).  Bricks are served on loopback
(replicate_support's NetworkReplica); the daemon's graph has a
debug/delay-gen under replicate on each child so that heals take long
enough to overlap.  Concurrency is measured by instrumenting the heal
function the crawls call, never by timing.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pytest

from glusterpy import volfile as vf
from glusterpy.fops import GFID, ROOT_GFID, Loc
from glusterpy.glusterd import volgen
from glusterpy.graph import Graph

from replicate_support import (NetworkReplica, create_file, gfid_req, index_entries,
                               network_client_volfile, tree_of, wait_for)
from test_afr_shd import SHD_OPTIONS
from test_heal_units import rep3
from test_replicate_heal import assert_clean
from xlators.cluster.replicate import crawl


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)
    monkeypatch.setattr("xlators.cluster.replicate.shd.SWEEP_PAUSE", 0.1)


class Instrumented:
    """crawl.heal_gfid wrapped: how many heals run at once, and how many
    of one gfid."""

    def __init__(self, monkeypatch):
        self.now = 0
        self.peak = 0
        self.by_gfid: collections.Counter = collections.Counter()
        self.peak_same = 0
        self.calls = 0
        real = crawl.heal_gfid

        async def heal_gfid(afr, gfid, **kw):
            self.now += 1
            self.calls += 1
            self.by_gfid[gfid] += 1
            self.peak = max(self.peak, self.now)
            self.peak_same = max(self.peak_same, self.by_gfid[gfid])
            try:
                return await real(afr, gfid, **kw)
            finally:
                self.now -= 1
                self.by_gfid[gfid] -= 1
        monkeypatch.setattr(crawl, "heal_gfid", heal_gfid)


def delayed_shd_text(net: NetworkReplica, usec: int = 20000, fops: str = "readv,writev",
                     **options) -> str:
    """The daemon's volfile with debug/delay-gen between replicate and
    each protocol/client (the pending-xattr names stay the clients')."""
    text = network_client_volfile(net.vol, net.ports, {**SHD_OPTIONS, **options})
    names = [f"{net.vol}-client-{i}" for i in range(len(net.ports))]
    delays = "".join(f"volume {n}-delay\n    type debug/delay-gen\n"
                     f"    option delay-percentage 100\n    option delay-duration {usec}\n"
                     f"    option enable {fops}\n    subvolumes {n}\nend-volume\n"
                     for n in names)
    text = text.replace(f"volume {net.vol}-replicate-0\n",
                        delays + f"volume {net.vol}-replicate-0\n", 1)
    text = text.replace(f"    subvolumes {' '.join(names)}\n",
                        f"    subvolumes {' '.join(n + '-delay' for n in names)}\n", 1)
    return text


def delayed_shd_graph(net: NetworkReplica, usec: int = 20000, fops: str = "readv,writev",
                      **options) -> Graph:
    return Graph.from_text(delayed_shd_text(net, usec, fops, **options))


async def overwrite_while_down(net, cafr, top, n: int, down=(1,)) -> list[GFID]:
    """n files written on every brick, then rewritten while the bricks
    `down` are away: data pending on the others, nothing for entry heal."""
    fds = []
    for i in range(n):
        fd, gfid = await create_file(top, f"f{i}", b"old" * 100)
        await top.flush(fd, None)  # the post-op now: no dirty mark left behind
        fds.append((fd, gfid))
    for b in down:
        await net.stop(b)
        await wait_for(lambda b=b: not cafr.child_up[b])
    for fd, _ in fds:
        await top.writev(fd, b"new" * 1000, 0, 0, None)
        await top.flush(fd, None)
        await top.release(fd, None)
    for b in down:
        await net.start(b)
    await wait_for(lambda: all(cafr.child_up))
    return [g for _, g in fds]


def totals(afr) -> dict:
    out = collections.Counter()
    for ev in {id(e): e for q in afr.shd.history for e in q}.values():
        out["healed"] += ev.healed_count
        out["failed"] += ev.heal_failed_count
        out["split_brain"] += ev.split_brain_count
    return dict(out)


# -- parallel heals ------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 4])
async def test_index_heals_overlap_up_to_shd_max_threads_with_exact_counts(
        tmp_path, monkeypatch, threads):
    n = 12
    inst = Instrumented(monkeypatch)
    net = NetworkReplica(tmp_path, 2)
    async with net.running():
        client = net.client_graph()
        async with client.running():
            cafr = client.by_name["rep-replicate-0"]
            await wait_for(lambda: all(cafr.child_up))
            await overwrite_while_down(net, cafr, client.top, n)
        assert len(index_entries(net.bricks[0])) == n
        shd = delayed_shd_graph(net, **{"shd-max-threads": str(threads)})
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: not any(index_entries(b) for b in net.bricks), 30)
            await wait_for(lambda: not any(h.event.start_time
                                           for h in afr.shd.index_healers))
            # as many heals at once as allowed, and no more
            assert inst.peak == threads
            assert inst.peak_same == 1
            # the counts are those of a serial sweep: every file once
            assert totals(afr) == {"healed": n, "failed": 0, "split_brain": 0}
            assert afr.shd.guard.peak <= threads
            state = afr.shd.dump_state()
            assert state["max_threads"] == threads and state["healing"] == 0
            assert (await afr.shd.xl_op("heal-count"))["children"][0]["count"] == 0
    assert tree_of(net.bricks[0]) == tree_of(net.bricks[1])
    assert_clean(net.bricks)


async def test_one_gfid_is_never_healed_twice_at_once(tmp_path, monkeypatch):
    """Two index healers list the same inodes (replica 3, brick 2 was
    away: bricks 0 and 1 both index them), and a full sweep meets a file
    under two names (a hard link): the heals of one gfid wait for each
    other, and every file is counted healed exactly once."""
    n = 10
    inst = Instrumented(monkeypatch)
    net = NetworkReplica(tmp_path, 3)
    async with net.running():
        client = net.client_graph()
        async with client.running():
            cafr = client.by_name["rep-replicate-0"]
            await wait_for(lambda: all(cafr.child_up))
            await overwrite_while_down(net, cafr, client.top, n, down=(2,))
            gfid0 = GFID(os.getxattr(net.bricks[0] / "f0", "trusted.gfid"))
            await client.top.link(Loc(gfid=gfid0, path="/f0"),
                                  Loc(path="/link0", pargfid=ROOT_GFID, name="link0"), None)
        assert len(index_entries(net.bricks[0])) >= n
        assert len(index_entries(net.bricks[1])) >= n
        shd = delayed_shd_graph(net, **{"shd-max-threads": "4"})
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: not any(index_entries(b) for b in net.bricks), 30)
            await wait_for(lambda: not any(h.event.start_time
                                           for h in afr.shd.index_healers))
            assert inst.peak_same == 1 and inst.peak >= 2
            assert totals(afr)["healed"] == n
            # a full sweep: both names of f0 are queued together
            inst.peak_same = 0
            await afr.shd.xl_op("heal-full")
            await wait_for(lambda: all(afr.shd.full_healers[i].sweeps >= 1 for i in range(3)))
            assert inst.peak_same == 1
    trees = [tree_of(b) for b in net.bricks]
    assert trees[0] == trees[1] == trees[2]
    assert_clean(net.bricks)


async def test_a_small_wait_qlength_bounds_the_queue(tmp_path):
    """The crawl waits when shd-wait-qlength entries wait for a job."""
    n = 10
    net = NetworkReplica(tmp_path, 2)
    async with net.running():
        client = net.client_graph({"shd-max-threads": "1", "shd-wait-qlength": "2"})
        async with client.running():
            afr = client.by_name["rep-replicate-0"]
            await wait_for(lambda: all(afr.child_up))
            await overwrite_while_down(net, afr, client.top, n)
            stats = await afr.heal_index(0)
            assert stats.healed == n and stats.failed == 0
            assert stats.peak_jobs == 1
            assert stats.peak_waiting == 2  # never more than shd-wait-qlength
            assert stats.crawl_waits > 0
            # a long queue: the crawl never waits, the jobs take from it
            await overwrite_while_down(net, afr, client.top, n)
            client.reconfigure(vf.parses(network_client_volfile(
                net.vol, net.ports, {"shd-max-threads": "3"})))
            stats = await afr.heal_index(0)
            assert stats.healed == n and stats.crawl_waits == 0
            assert (stats.peak_jobs, stats.peak_waiting) == (3, n - 3)
    assert_clean(net.bricks)


async def test_shd_max_threads_reaches_a_sweep_in_progress(tmp_path, monkeypatch):
    """volume set while the daemon heals: the next entries get more jobs."""
    n = 24
    inst = Instrumented(monkeypatch)
    net = NetworkReplica(tmp_path, 2)
    async with net.running():
        client = net.client_graph()
        async with client.running():
            cafr = client.by_name["rep-replicate-0"]
            await wait_for(lambda: all(cafr.child_up))
            await overwrite_while_down(net, cafr, client.top, n)
        shd = delayed_shd_graph(net, usec=50000)
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: inst.calls >= 2)
            assert inst.peak == 1
            shd.reconfigure(vf.parses(delayed_shd_text(net, usec=50000,
                                                       **{"shd-max-threads": "4"})))
            assert afr.opts.shd_max_threads == 4
            await wait_for(lambda: not any(index_entries(b) for b in net.bricks), 30)
            # the index empties as each heal ends; the sweep's counts are
            # added up when its jobs have returned
            await wait_for(lambda: totals(afr)["healed"] >= n, 30)
            assert 2 <= inst.peak <= 4 and inst.peak_same == 1
            assert totals(afr)["healed"] == n
    assert_clean(net.bricks)


# -- options -----------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [("shd-max-threads", "0"), ("shd-max-threads", "65"),
                                       ("shd-max-threads", "many"),
                                       ("shd-wait-qlength", "0"),
                                       ("shd-wait-qlength", "655537")])
def test_bad_option_values_are_refused_by_name(key, value):
    text = network_client_volfile("rep", [1, 2], {key: value})
    with pytest.raises(Exception, match=key):
        Graph.from_text(text)


async def test_bad_values_leave_a_running_graph_unchanged(tmp_path):
    net = NetworkReplica(tmp_path, 2)
    async with net.running():
        g = net.client_graph({"shd-max-threads": "2"})
        async with g.running():
            afr = g.by_name["rep-replicate-0"]
            with pytest.raises(Exception, match="shd-max-threads"):
                g.reconfigure(vf.parses(network_client_volfile(
                    "rep", net.ports, {"shd-max-threads": "100"})))
            assert afr.opts.shd_max_threads == 2
            g.reconfigure(vf.parses(network_client_volfile(
                "rep", net.ports, {"shd-max-threads": "64", "shd-wait-qlength": "655536"})))
            assert (afr.opts.shd_max_threads, afr.opts.shd_wait_qlength) == (64, 655536)


def test_volume_set_keys_reach_the_shd_volfile():
    vol = rep3(options={"cluster.shd-max-threads": "8", "cluster.shd-wait-qlength": "64"})
    afr = vf.parses(volgen.shd_volfile(vol))["rep3-replicate-0"].options
    assert (afr["shd-max-threads"], afr["shd-wait-qlength"]) == ("8", "64")
    defaults = vf.parses(volgen.shd_volfile(rep3()))["rep3-replicate-0"].options
    assert "shd-max-threads" not in defaults  # the translator's default, 1


# -- a full sweep resumes ----------------------------------------------------------------


def dir_gfids(brick: Path) -> dict[str, str]:
    """Every directory of a brick (root included) -> its gfid."""
    out = {"": str(GFID(os.getxattr(brick, "trusted.gfid")))}
    for dirpath, dirnames, _ in os.walk(brick):
        if dirpath == str(brick):
            dirnames[:] = [d for d in dirnames if d != ".glusterfs"]
        for d in dirnames:
            p = Path(dirpath) / d
            out[os.path.relpath(p, brick)] = str(GFID(os.getxattr(p, "trusted.gfid")))
    return out


async def test_an_interrupted_full_sweep_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(crawl.SweepPosition, "SAVE_INTERVAL", 0.0)
    state = tmp_path / "shd-state"
    net = NetworkReplica(tmp_path, 2)
    tops, subs, files = 6, 2, 3
    async with net.running():
        client = net.client_graph()
        async with client.running():
            cafr = client.by_name["rep-replicate-0"]
            await wait_for(lambda: all(cafr.child_up))
            await net.stop(1)
            await wait_for(lambda: not cafr.child_up[1])
            top = client.top
            for t in range(tops):
                r = await top.mkdir(Loc(path=f"/d{t}", pargfid=ROOT_GFID, name=f"d{t}"),
                                    0o755, 0, gfid_req())
                dg = r.iatt.gfid
                for s in range(subs):
                    r2 = await top.mkdir(Loc(path=f"/d{t}/s{s}", pargfid=dg, name=f"s{s}"),
                                         0o755, 0, gfid_req())
                    for f in range(files):
                        fd, _ = await create_file(top, f"f{f}", b"x" * 4096, r2.iatt.gfid,
                                                  f"/d{t}/s{s}")
                        await top.release(fd, None)
                for f in range(files):
                    fd, _ = await create_file(top, f"f{f}", b"y" * 4096, dg, f"/d{t}")
                    await top.release(fd, None)
        await net.start(1)
        # the index is lost (a replaced brick's case): only a full sweep heals
        for kind in ("xattrop", "dirty", "entry-changes"):
            d = net.bricks[0] / ".glusterfs" / "indices" / kind
            for name in index_entries(net.bricks[0], kind):
                p = d / name
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        dirs = dir_gfids(net.bricks[0])
        assert len(dirs) == 1 + tops + tops * subs
        opts = {"shd-max-threads": "2", "shd-state-dir": str(state)}
        # the first daemon: stopped after a few directories
        shd = delayed_shd_graph(net, usec=30000, fops="writev", **opts)
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: all(afr.child_up))
            await afr.shd.xl_op("heal-full")
            healer = afr.shd.full_healers[0]
            await wait_for(lambda: healer.last_stats is not None and
                           healer.last_stats.dirs_done >= 4, 30)
        saved_path = state / "rep-replicate-0.rep-client-0-delay.full-sweep.json"
        todo = json.loads(saved_path.read_text())["todo"]
        by_gfid = {g: p for p, g in dirs.items()}
        assert todo and {g for g, _ in todo} <= set(by_gfid)

        def subtree(path: str) -> set[str]:
            prefix = path + "/" if path else ""
            return {g for p, g in dirs.items() if p and p.startswith(prefix)}

        # what a resumed sweep lists: every saved directory, and below one
        # the subdirectories it had not stacked yet, with all they hold
        left = set()
        for g, skip in todo:
            left.add(g)
            if skip is None:
                continue  # listed already: its files only
            path = by_gfid[g]
            for p, sub in dirs.items():
                if p and os.path.dirname(p) == path and sub not in skip:
                    left |= {sub} | subtree(p)
        finished = set(dirs.values()) - left
        assert len(finished) >= 2, "the first daemon finished too few directories"
        # the second daemon continues by itself, listing only what was left
        shd = delayed_shd_graph(net, usec=1000, fops="writev", **opts)
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            healer = afr.shd.full_healers[0]
            await wait_for(lambda: healer.sweeps >= 1, 30)
            assert healer.last_stats.resumed_dirs == len(todo)
            assert healer.last_stats.dirs_listed == len(left) < len(dirs)
            assert not saved_path.exists()
            await wait_for(lambda: tree_of(net.bricks[0]) == tree_of(net.bricks[1]), 30)
            # the index healers finish the pending marks the heals left
            await afr.shd.xl_op("heal-index")
            await wait_for(lambda: not any(index_entries(b) for b in net.bricks), 30)
    assert tree_of(net.bricks[0]) == tree_of(net.bricks[1])
    assert_clean(net.bricks)


def test_a_saved_position_of_another_volume_is_ignored(tmp_path):
    pos = crawl.SweepPosition(tmp_path, "rep-replicate-0", "rep-client-0", "vol-a")
    pos.save([(GFID(bytes(15) + b"\x01"), frozenset())], force=True)
    assert pos.load() is not None
    other = crawl.SweepPosition(tmp_path, "rep-replicate-0", "rep-client-0", "vol-b")
    assert other.load() is None
    pos.path.write_text("{not json")
    assert pos.load() is None
    pos.clear()
    assert not pos.exists() and pos.load() is None
