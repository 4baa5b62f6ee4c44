"""copy_file_range through the translators (issue 21): replicate copies on
every replica in one changelog transaction, distribute on one brick or
between two, stripe block by block, and the clones gfapi makes.

Bricks are real graphs served by protocol/server on loopback and reached
through protocol/client, so the fop travels GlusterFS's wire encoding; the
client's bytes on the wire are read from its sockets (TCP_INFO).
"""

from __future__ import annotations

import errno
import os

import pytest

from glusterpy.fops import Fd, FopError, Loc

from replicate_support import create_file, index_entries, pending
from test_replicate_heal import down, heal_until_clean, key, read_all, replica, up


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)


# -- replicate ------------------------------------------------------------------------


async def test_replicate_copies_on_every_replica_in_one_transaction(tmp_path):
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        data = os.urandom(300_000)
        src, sg = await create_file(top, "src", data)
        dst, dg = await create_file(top, "dst")
        reply = await top.copy_file_range(src, 1000, dst, 10, 200_000, 0, None)
        assert reply.count == 200_000
        assert reply.postbuf_dst.size == 200_010
        for b in net.bricks:
            assert (b / "dst").read_bytes() == b"\0" * 10 + data[1000:201_000]
            # the transaction's post-op cleared what its pre-op set
            assert pending(b / "dst", key(0)) == (0, 0, 0)
        # the end of the source ends the copy: a short count, the same everywhere
        reply = await top.copy_file_range(src, 299_000, dst, 0, 10_000, 0, None)
        assert reply.count == 1000
        with pytest.raises(FopError) as e:
            await top.copy_file_range(src, 0, dst, 0, 10, 1, None)
        assert e.value.errno == errno.EINVAL
        for fd in (src, dst):
            await top.release(fd, None)


async def test_replicate_does_not_copy_a_stale_source_copy(tmp_path):
    """The source changed while brick 2 was down: brick 2 is not asked to
    copy its old copy; the others accuse it for the destination, and heal
    gives it the right bytes."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        src, sg = await create_file(top, "src", b"old" * 1000)
        await down(net, afr, 2)
        await top.writev(src, b"new" * 1000, 0, 0, None)
        await top.release(src, None)  # the write's changelog reaches the disk
        await up(net, afr, 2)
        src = Fd(gfid=sg, flags=os.O_RDONLY)
        await top.open(Loc(gfid=sg), os.O_RDONLY, src, None)
        dst, dg = await create_file(top, "dst")
        reply = await top.copy_file_range(src, 0, dst, 0, 3000, 0, None)
        assert reply.count == 3000
        assert await read_all(top, dg) == b"new" * 1000
        for fd in (src, dst):   # ends the eager lock's delayed post-op
            await top.release(fd, None)
        b0, b1, b2 = net.bricks
        for b in (b0, b1):
            assert (b / "dst").read_bytes() == b"new" * 1000
            assert pending(b / "dst", key(2))[0] > 0
            assert str(dg) in index_entries(b)
        assert (b2 / "dst").read_bytes() != b"new" * 1000
        await heal_until_clean(afr)
        assert (b2 / "dst").read_bytes() == b"new" * 1000
