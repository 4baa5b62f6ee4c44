"""Hypothesis: random file operations on replica 3 with bricks going away
and coming back between them, against an in-memory model.

The bricks are served in process (protocol/server on loopback) and reached
through protocol/client, so "kill" drops real connections and replicate
sees real CHILD_DOWN/CHILD_UP; the volume is used through gfapi.  Quorum
is GlusterFS's auto quorum for three bricks: with one brick gone every
operation must still work and agree with the model (as long as the two
left missed no change); with fewer good copies a change is refused with
ENOTCONN and changes nothing.  At the end all bricks
come back, the indices are healed as the self-heal daemon would heal them,
and every brick must hold exactly the model, with nothing pending.
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glusterpy.gfapi import AsyncVolume

from replicate_support import NetworkReplica, wait_for
from test_replicate_heal import assert_clean, heal_until_clean

pytestmark = pytest.mark.slow

NAMES = ["a", "b", "c"]

ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.integers(0, 6000),
              st.binary(min_size=1, max_size=3000)),
    st.tuples(st.just("truncate"), st.sampled_from(NAMES), st.integers(0, 8000)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("read"), st.sampled_from(NAMES)),
    st.tuples(st.just("kill"), st.integers(0, 2)),
    st.tuples(st.just("revive"), st.integers(0, 2)),
), min_size=1, max_size=25)


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.05)


#: sequences a random run found (CI, 2026-12-07), failing since at least
#: e213ca6: fixed ones stay as regressions, any not fixed yet is a strict
#: xfail until replicate is
FOUND_SEQUENCES = [
    # entry heal of a rename brick 2 missed healed 'b' (stale: unlink) and 'a'
    # (missing: re-create with b's gfid) side by side; when the unlink took
    # the gfid's last link first, 'a' was made anew, empty, with no data
    # pending (heal_entry now heals names sharing a gfid one by one,
    # re-creations first)
    pytest.param(
        [("write", "b", 0, b"\x00"), ("unlink", "a"), ("write", "c", 0, b":\xb9>"),
         ("kill", 2), ("rename", "b", "a")], id="rename-healed-as-unlink-and-recreate"),
    # after a rename over 'b' missed by brick 2, with brick 0 down and brick 2
    # back, the lookup of 'b' saw two gfids and answered EIO instead of
    # trusting brick 1: the parent's readable set, computed before brick 2
    # came back, vouched for brick 2 (lookup now refreshes a parent of an
    # older event generation when the children disagree;
    # test_replicate_heal.py's stale-brick tests)
    pytest.param(
        [("write", "b", 0, b"\x00"), ("unlink", "a"), ("write", "c", 0, b"\x00"),
         ("kill", 2), ("rename", "c", "b"), ("kill", 0), ("revive", 2),
         ("write", "a", 0, b"\x00"), ("unlink", "b")],
        id="rename-over-then-lookup-with-the-stale-brick-back"),
]


# derandomized: the CI runs the same 25 sequences each time; what a random
# run found is in FOUND_SEQUENCES (run it with derandomize off to explore)
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sequence=ops)
async def test_operations_with_bricks_going_away(tmp_path_factory, sequence):
    await run_sequence(tmp_path_factory, sequence)


@pytest.mark.parametrize("sequence", FOUND_SEQUENCES)
async def test_sequences_found_before(tmp_path_factory, sequence):
    await run_sequence(tmp_path_factory, sequence)


async def run_sequence(tmp_path_factory, sequence) -> None:
    """The sequence on a fresh replica 3 volume, checked against the model
    as it goes, then healed and every brick compared with the model."""
    tmp = tmp_path_factory.mktemp("kills")
    net = NetworkReplica(tmp, 3)
    model: dict[str, bytearray] = {}
    async with net.running():
        graph = net.client_graph({"granular-entry-heal": "on"})
        afr = graph.by_name["rep-replicate-0"]
        async with AsyncVolume(graph, mount_timeout=10) as vol:
            await wait_for(lambda: all(afr.child_up))
            dead: set[int] = set()
            stale: set[int] = set()
            for op in sequence:
                kind = op[0]
                if kind == "kill":
                    if op[1] not in dead:
                        await net.stop(op[1])
                        dead.add(op[1])
                        await wait_for(lambda: not afr.child_up[op[1]])
                    continue
                if kind == "revive":
                    if op[1] in dead:
                        await net.start(op[1])
                        dead.discard(op[1])
                        await wait_for(lambda: afr.child_up[op[1]])
                    continue
                # what must work: two live bricks that missed no change.  A
                # brick that was down when something changed stays behind
                # until the heal at the end, and afr - as GlusterFS's - serves
                # nothing from fewer than quorum good copies: with a stale
                # brick among the two alive, ENOTCONN (or ENOENT for a name
                # only the stale one was asked about) is a right answer
                quorum = len({0, 1, 2} - dead - stale) >= 2
                try:
                    if await apply(vol, model, op):
                        stale |= dead
                except OSError as e:
                    assert not quorum, f"{op} failed with {e} while quorum was met"
                    assert e.errno in (errno.ENOTCONN, errno.ENOENT), f"{op}: {e}"
            for i in sorted(dead):
                await net.start(i)
            await wait_for(lambda: all(afr.child_up))
            await heal_until_clean(afr, rounds=8)
            for name, data in model.items():
                async with await vol.fopen("/" + name, "rb") as f:
                    assert await f.read() == bytes(data)
            assert sorted(await vol.listdir("/")) == sorted(model)
    for b in net.bricks:
        assert sorted(p.name for p in b.iterdir() if p.name != ".glusterfs") == sorted(model)
        for name, data in model.items():
            assert (b / name).read_bytes() == bytes(data), f"{b.name}/{name}"
    assert_clean(net.bricks)


async def apply(vol, model, op) -> bool:
    """Do `op` on the volume; on the model only when it succeeded (a
    refused op must change nothing).  True when it changed something."""
    kind = op[0]
    if kind == "write":
        _, name, offset, data = op
        async with await vol.fopen("/" + name, "r+b" if name in model else "w+b") as f:
            await f.pwrite(data, offset)
        cur = model.setdefault(name, bytearray())
        if len(cur) < offset:
            cur.extend(bytes(offset - len(cur)))
        cur[offset:offset + len(data)] = data
    elif kind == "truncate":
        _, name, size = op
        if name not in model:
            return False
        await vol.truncate("/" + name, size)
        cur = model[name]
        del cur[size:]
        cur.extend(bytes(size - len(cur)))
    elif kind == "unlink":
        if op[1] not in model:
            return False
        await vol.unlink("/" + op[1])
        del model[op[1]]
    elif kind == "rename":
        _, a, b = op
        if a not in model or a == b:
            return False
        await vol.rename("/" + a, "/" + b)
        model[b] = model.pop(a)
    elif kind == "read":
        if op[1] not in model:
            return False
        async with await vol.fopen("/" + op[1], "rb") as f:
            assert await f.read() == bytes(model[op[1]])
        return False
    return True
