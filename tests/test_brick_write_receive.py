"""The brick's WRITE receive path (issue 15, bench/notes/qemu.md (14)): a
WRITE call is received into the connection's arena and its payload reaches
storage/posix as a view of it, placed page-aligned, so an O_DIRECT write
goes to Linux AIO without being copied - counted on both sides, over a real
socket, with the data checked on disk."""

from __future__ import annotations

import mmap
import os

import trio

from glusterpy.aligned import address, direct_ready, direct_write_source
from glusterpy.fops import GFID, ROOT_GFID, Loc
from glusterpy.graph import Graph
from glusterpy.rpc import ANON_FD, RemoteFd

from brickclient import raw_client

WRITE = 128 * 1024


def o_direct_brick(directory) -> str:
    """server -> io-threads -> posix with O_DIRECT through Linux AIO."""
    return f"""
volume w-posix
    type storage/posix
    option directory {directory}
    option o-direct on
    option linux-aio on
end-volume
volume w-iot
    type performance/io-threads
    subvolumes w-posix
end-volume
volume w-server
    type protocol/server
    option transport.socket.listen-port 0
    option transport.socket.bind-address 127.0.0.1
    option auth.addr.w-iot.allow *
    subvolumes w-iot
end-volume
"""


def server_connection(server):
    (conn,) = server.connections
    return conn.endpoint.conn


async def test_o_direct_writes_reach_the_disk_without_a_copy(brick):
    graph = Graph.from_text(o_direct_brick(brick))
    async with graph.running(), raw_client(graph.top.port) as c:
        posix = graph.by_name["w-posix"]
        assert posix._aio is not None, "this kernel gives no AIO context"
        assert (await c.setvolume("w-iot")).op_ret == 0
        gfid = GFID.random()
        made = await c.ok("create", loc=Loc(pargfid=ROOT_GFID, name="img"), flags=os.O_RDWR,
                          mode=0o644, umask=0, xdata={"gfid-req": gfid})
        fd = made.fd._replace(gfid=made.iatt.gfid)
        blobs = [os.urandom(WRITE) for _ in range(24)]
        odd = os.urandom(WRITE - 512)
        # the image's size first (qemu's, preallocated): a write past the
        # end goes to a worker instead of AIO (storage/posix writev)
        await c.ok("ftruncate", fd=fd, offset=len(blobs) * WRITE + len(odd))
        conn = server_connection(graph.top)
        copied_before, copies_before = conn.receive_copied, posix.direct_copies
        # one after another (fio's gfapi engine with one job), then 8 at once (qemu)
        for i in range(8):
            assert (await c.ok("writev", fd=fd, data=blobs[i], offset=i * WRITE,
                               flags=0)).count == WRITE

        async def write(i):
            assert (await c.ok("writev", fd=fd, data=blobs[i], offset=i * WRITE,
                               flags=0)).count == WRITE
        async with trio.open_nursery() as n:
            for i in range(8, len(blobs)):
                n.start_soon(write, i)
        # the first WRITE had no placement to go by; it was realigned while
        # little of it had arrived, or copied at posix - the others lay aligned
        assert posix.direct_copies - copies_before <= 2, posix.direct_copies
        assert conn.receive_copied - copied_before <= 2 * WRITE
        # an unaligned payload (an odd size) still works, through the copy
        assert (await c.ok("writev", fd=fd, data=odd, offset=len(blobs) * WRITE,
                           flags=0)).count == len(odd)
        assert posix.direct_copies > copies_before
        await c.ok("release", fd=fd)
        # and anonymous fds, asked O_DIRECT per write
        anon = RemoteFd(made.iatt.gfid, ANON_FD)
        assert (await c.ok("writev", fd=anon, data=blobs[0], offset=0,
                           flags=os.O_DIRECT)).count == WRITE
    assert (brick / "img").read_bytes() == b"".join(blobs) + odd


def test_direct_ready_and_the_aio_source_of_a_read_only_view():
    arena = mmap.mmap(-1, 4 * 4096)
    view = memoryview(arena).toreadonly()
    assert direct_ready(view[4096:3 * 4096]) and direct_ready(view[:512])
    assert not direct_ready(view[1:513])            # not page-aligned
    assert not direct_ready(view[:1000])            # not whole 512-byte blocks
    assert not direct_ready(view[:0])
    assert address(view[4096:]) == address(memoryview(arena)) + 4096
    arena[4096:4100] = b"abcd"
    source = direct_write_source(view[4096:8192])
    assert source is not None and bytes(source)[:4] == b"abcd"
    assert direct_write_source(view[100:612]) is None


async def test_posix_writes_an_aligned_read_only_payload_as_it_lies(brick):
    """storage/posix's O_DIRECT writev takes a page-aligned read-only view
    (what the receive arena hands it) through AIO and through the workers
    alike, and copies an unaligned one, with the same bytes on disk."""
    from test_io_threads import make_file, volfile
    arena = mmap.mmap(-1, 3 * WRITE)
    arena[:] = os.urandom(3 * WRITE)
    aligned = memoryview(arena).toreadonly()[WRITE:2 * WRITE]
    unaligned = memoryview(arena).toreadonly()[100:100 + WRITE]
    for linux_aio in (True, False):
        graph = Graph.from_text(volfile(brick, {"offload-above-usec": "0"}, o_direct=True,
                                        linux_aio=linux_aio))
        async with graph.running():
            top, posix = graph.top, graph.by_name["t-posix"]
            name = f"f{linux_aio}"
            fd = await make_file(top, name)
            before = posix.direct_copies
            assert (await top.writev(fd, aligned, 0, 0, None)).count == WRITE
            assert (await top.writev(fd, unaligned, WRITE, 0, None)).count == WRITE
            if linux_aio:
                assert posix._aio is not None
                assert posix.direct_copies == before + 1    # the unaligned one only
            await top.release(fd, None)
        assert (brick / name).read_bytes() == bytes(aligned) + bytes(unaligned)
