"""cluster/replicate as the self-heal daemon (xlators/cluster/replicate/shd.py), in process.

Bricks are served on loopback by protocol/server (replicate_support's
NetworkReplica); one client graph writes while a brick is away, and a
second graph - replicate with ``iam-self-heal-daemon yes`` and the options
glusterd gives glustershd - heals on its own: nothing calls a heal
function.  The tests check when the healers crawl (CHILD_UP, heal-timeout,
self-heal-daemon on/off), which bricks count as local (node-uuid), and
glusterd's brick op answers (afr_xl_op).
"""

from __future__ import annotations

import uuid

import pytest
import trio

from glusterpy.fops import Loc
from glusterpy.graph import Graph

from replicate_support import (NetworkReplica, create_file, index_entries, network_client_volfile,
                               tree_of, wait_for)
from test_replicate_heal import assert_clean
from xlators.cluster.replicate import shd as afr_shd

SHD_OPTIONS = {"iam-self-heal-daemon": "yes", "data-self-heal": "on",
               "metadata-self-heal": "on", "entry-self-heal": "on",
               "background-self-heal-count": "0"}


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)
    monkeypatch.setattr("xlators.cluster.replicate.shd.SWEEP_PAUSE", 0.1)


def shd_graph(net: NetworkReplica, **options) -> Graph:
    return Graph.from_text(network_client_volfile(net.vol, net.ports,
                                                  {**SHD_OPTIONS, **options}))


def sweeps(afr) -> list[int]:
    return [h.sweeps for h in afr.shd.index_healers]


async def write_while_down(net, client_afr, top, i: int, names=("f1", "f2")):
    """Files written while brick `i` is away: pending for it on the others."""
    await net.stop(i)
    await wait_for(lambda: not client_afr.child_up[i])
    for name in names:
        fd, _ = await create_file(top, name, name.encode() * 500)
        await top.flush(fd, None)
        await top.release(fd, None)


async def test_the_daemon_heals_a_brick_that_comes_back(tmp_path):
    net = NetworkReplica(tmp_path, 3)
    async with net.running():
        client = net.client_graph()
        shd = shd_graph(net)
        async with client.running(), shd.running():
            cafr = client.by_name["rep-replicate-0"]
            safr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: all(cafr.child_up) and all(safr.child_up))
            await client.top.lookup(Loc.root(), None)
            # the first CHILD_UPs crawl every up child once (empty indices)
            await wait_for(lambda: all(n >= 1 for n in sweeps(safr)))
            await write_while_down(net, cafr, client.top, 1)
            assert index_entries(net.bricks[0])  # pending for brick 1
            await net.start(1)
            # brick 1's CHILD_UP wakes every index healer: bricks 0 and 2
            # hold the entries; nobody calls a heal function
            await wait_for(lambda: all(not index_entries(b) for b in net.bricks) and
                           (net.bricks[1] / "f2").exists(), timeout=20)
            await wait_for(lambda: (net.bricks[1] / "f2").read_bytes() == b"f2" * 500)
            trees = [tree_of(b) for b in net.bricks]
            assert trees[0] == trees[1] == trees[2]
            assert_clean(net.bricks)
            # the crawl events count what was healed (the two files and
            # the root's entries), while the sweep runs and after; a heal
            # is counted when it returns, a moment after its post-op has
            # emptied the index
            with trio.fail_after(10):
                while True:
                    stats = await safr.shd.xl_op("statistics")
                    if sum(e["healed"] for c in stats["children"] for e in c["events"]) >= 2:
                        break
                    await trio.sleep(0.02)
            await wait_for(lambda: not any(h.event.start_time
                                           for h in safr.shd.index_healers))
            stats = await safr.shd.xl_op("statistics")
            events = [e for c in stats["children"] for e in c["events"]]
            assert sum(e["healed"] for e in events) >= 2
            assert {e["type"] for e in events} == {"INDEX"} and all(
                e["end"] >= e["start"] > 0 for e in events)


async def test_heal_timeout_and_self_heal_daemon_switch(tmp_path):
    net = NetworkReplica(tmp_path, 2)
    async with net.running():
        shd = shd_graph(net)
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: all(n >= 1 for n in sweeps(afr)))
            await trio.sleep(0.5)
            before = sweeps(afr)
            await trio.sleep(0.5)
            assert sweeps(afr) == before  # heal-timeout 600: no crawl meanwhile
            # a new heal-timeout wakes the healers at once
            text = network_client_volfile(net.vol, net.ports,
                                          {**SHD_OPTIONS, "heal-timeout": "5"})
            from glusterpy import volfile as vf
            shd.reconfigure(vf.parses(text))
            await wait_for(lambda: all(a > b for a, b in zip(sweeps(afr), before)))
            # off: woken or not, the healers sleep
            shd.reconfigure(vf.parses(network_client_volfile(
                net.vol, net.ports, {**SHD_OPTIONS, "heal-timeout": "5",
                                     "self-heal-daemon": "off"})))
            before = sweeps(afr)
            afr.shd.child_up()
            await trio.sleep(0.6)
            assert sweeps(afr) == before
            reply = await afr.shd.xl_op("heal-index")
            assert sweeps(afr) == before and reply["op_ret"] == 0
            # on again: they crawl
            shd.reconfigure(vf.parses(text))
            await wait_for(lambda: all(a > b for a, b in zip(sweeps(afr), before)))


async def test_only_local_bricks_are_crawled_and_brick_op_answers(tmp_path, monkeypatch):
    """Bricks report their node's uuid (posix glusterd-uuid); the daemon
    crawls the ones whose uuid is its node-uuid."""
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    net = NetworkReplica(tmp_path, 3)
    owners = [mine, theirs, mine]
    import replicate_support
    plain = replicate_support.served_brick_volfile

    def with_owner(vol, i, directory, port, arbiter=False):
        text = plain(vol, i, directory, port, arbiter)
        return text.replace(f"    option directory {directory}\n",
                            f"    option directory {directory}\n"
                            f"    option glusterd-uuid {owners[i]}\n", 1)
    monkeypatch.setattr(replicate_support, "served_brick_volfile", with_owner)
    async with net.running():
        shd = shd_graph(net, **{"node-uuid": mine})
        async with shd.running():
            afr = shd.by_name["rep-replicate-0"]
            await wait_for(lambda: all(afr.child_up))
            await wait_for(lambda: sweeps(afr)[0] >= 1 and sweeps(afr)[2] >= 1)
            assert [await afr.shd.is_local(i) for i in range(3)] == [True, False, True]
            reply = await afr.shd.xl_op("heal-index")
            assert reply["op_ret"] == 0
            assert [c["status"] for c in reply["children"]] == [
                afr_shd.SSTARTED_SELF_HEAL, afr_shd.SBRICK_IS_REMOTE,
                afr_shd.SSTARTED_SELF_HEAL]
            assert reply["children"][1]["brick"] == "127.0.0.1:rep-index-1"
            await trio.sleep(0.3)
            assert sweeps(afr)[1] == 0  # never crawled: not local
            assert not afr.shd.index_healers[1].running
            counts = await afr.shd.xl_op("heal-count")
            assert [(c["child"], c.get("count")) for c in counts["children"]] == \
                [(0, 0), (2, 0)]
            # full crawl on demand, on the local bricks
            reply = await afr.shd.xl_op("heal-full")
            assert reply["op_ret"] == 0
            await wait_for(lambda: afr.shd.full_healers[0].sweeps >= 1 and
                           afr.shd.full_healers[2].sweeps >= 1)
            types = {e["type"] for c in (await afr.shd.xl_op("statistics"))["children"]
                     for e in c["events"]}
            assert types == {"INDEX", "FULL"}
            # a brick down: glusterd's brick op fails for the index heal
            await net.stop(2)
            await wait_for(lambda: not afr.child_up[2])
            reply = await afr.shd.xl_op("heal-index")
            assert reply["op_ret"] == -1
            assert reply["children"][2]["status"] == afr_shd.SBRICK_NOT_CONNECTED
            await net.stop(1)
            await wait_for(lambda: not afr.child_up[1])
            reply = await afr.shd.xl_op("heal-full")
            assert reply["op_ret"] == -1
            assert reply["children"][0]["status"] == afr_shd.SLESS_THAN2_BRICKS_IN_REP
            with pytest.raises(ValueError, match="unknown self-heal daemon op"):
                await afr.shd.xl_op("heal-everything")
