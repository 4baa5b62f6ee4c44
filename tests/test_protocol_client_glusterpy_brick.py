"""protocol/client against glusterpy's own brick (protocol/server ->
[features/locks ->] storage/posix), in process over loopback TCP.

Nothing is faked: the client and the brick are the translators glusterpy
ships, talking GlusterFS RPC over a real socket.  The conformance suite runs
over the pair; POSIX locks taken through one client conflict with another's
and go when that client goes; a brick that stops and comes back on its port
gets the client's fds re-opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph
from glusterpy.xlator import Event

from brickclient import brick_volfile
from conformance import CHECKS

STACKS = ["posix", "locks"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_volfile(port: int, subvolume: str, **options) -> str:
    text = ("volume c-client\n    type protocol/client\n"
            "    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume {subvolume}\n")
    text += "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    return text + "end-volume\n"


@contextlib.asynccontextmanager
async def brick(directory, port: int = 0, locks: bool = False, servers: list | None = None,
                **volfile_options):
    """Our brick on `port` (0: any); yields (port, subvolume).  `servers`
    collects its protocol/server translator."""
    server_options = {"transport.socket.listen-port": str(port)}
    server_options.update(volfile_options.pop("server_options", {}))
    graph = Graph.from_text(brick_volfile(directory, locks=locks, server_options=server_options,
                                          **volfile_options))
    async with graph.running():
        if servers is not None:
            servers.append(graph.top)
        yield graph.top.port, graph.top.children[0].name


@contextlib.asynccontextmanager
async def client(port: int, subvolume: str, **options):
    graph = Graph.from_text(client_volfile(port, subvolume, **options))
    async with graph.running():
        assert await graph.wait_child_up(10), "the client never came up"
        yield graph


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("check_fn", CHECKS, ids=[c.__name__ for c in CHECKS])
async def test_conformance_against_our_brick(check_fn, stack, tmp_path):
    async with brick(tmp_path, locks=stack == "locks") as (port, subvolume):
        graph = Graph.from_text(client_volfile(port, subvolume))
        if check_fn.kind == "gfapi":
            async with AsyncVolume(graph, mount_timeout=10) as vol:
                await check_fn(vol)
        else:
            async with graph.running():
                assert await graph.wait_child_up(10)
                await check_fn(graph)


async def test_two_graphs_are_two_clients_of_the_brick(tmp_path):
    """Graphs from the same volfile must not share a client identity: a
    brick would give them one fd table and drop neither's locks while the
    other stays connected."""
    servers = []
    async with brick(tmp_path, servers=servers) as (port, subvolume):
        async with client(port, subvolume), client(port, subvolume):
            clients = servers[0].dump_state()["clients"]
            assert len(clients) == 2
            assert all(c["connections"] == 1 for c in clients.values())


async def create(top, name: str) -> Fd:
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(pargfid=ROOT_GFID, name=name), os.O_RDWR | os.O_CREAT,
                             0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    return fd


async def test_posix_locks_between_two_clients(tmp_path):
    async with brick(tmp_path, locks=True) as (port, subvolume):
        async with client(port, subvolume) as a:
            fd_a = await create(a.top, "locked")
            wr = fops.Flock(type=fops.LockType.WRLCK, start=0, len=100, owner=b"owner-a")
            await a.top.lk(fd_a, fops.LockCmd.SETLK, wr, None)
            async with client(port, subvolume) as b:
                fd_b = Fd(gfid=fd_a.gfid, flags=os.O_RDWR)
                await b.top.open(Loc(gfid=fd_a.gfid), os.O_RDWR, fd_b, None)
                theirs = fops.Flock(type=fops.LockType.WRLCK, start=50, len=10,
                                    owner=b"owner-b")
                with pytest.raises(FopError) as e:
                    await b.top.lk(fd_b, fops.LockCmd.SETLK, theirs, None)
                assert e.value.errno == errno.EAGAIN
                got = await b.top.lk(fd_b, fops.LockCmd.GETLK, theirs, None)
                assert got.flock.type == fops.LockType.WRLCK and got.flock.owner == b"owner-a"

                # a blocking request waits for the holder, who then goes away
                async with trio.open_nursery() as nursery:
                    granted = trio.Event()

                    async def wait_for_lock():
                        await b.top.lk(fd_b, fops.LockCmd.SETLKW, theirs, None)
                        granted.set()
                    nursery.start_soon(wait_for_lock)
                    await trio.sleep(0.2)
                    assert not granted.is_set()
                    await a.top.release(fd_a, None)  # closes the fd: its locks go
                    with trio.fail_after(5):
                        await granted.wait()
                assert fd_b.ctx[b.top].locks == [(b"owner-b", 50, 59)]
                await b.top.release(fd_b, None)


async def test_fds_reopened_when_our_brick_comes_back(tmp_path):
    port = free_port()
    events: list[Event] = []
    async with trio.open_nursery() as nursery:
        async def serve(task_status=trio.TASK_STATUS_IGNORED):
            async with brick(tmp_path, port) as (_, subvolume):
                task_status.started(subvolume)
                await trio.sleep_forever()

        brick_scope = trio.CancelScope()

        async def serve_in_scope(task_status=trio.TASK_STATUS_IGNORED):
            with brick_scope:
                await serve(task_status=task_status)
        subvolume = await nursery.start(serve_in_scope)

        graph = Graph.from_text(client_volfile(port, subvolume))
        graph.root.listeners.append(lambda ev, src, data: events.append(ev))
        async with graph.running():
            assert await graph.wait_child_up(10)
            top = graph.top
            fd = await create(top, "f")
            await top.writev(fd, b"first ", 0, 0, None)

            brick_scope.cancel()  # the brick goes away, closing its connections
            with trio.fail_after(5):
                while graph.root.child_up:
                    await graph.root.state_changed.wait()
            with pytest.raises(FopError) as e:
                await top.writev(fd, b"lost", 6, 0, None)
            assert e.value.errno == errno.ENOTCONN

            brick_scope = trio.CancelScope()
            await nursery.start(serve_in_scope)
            assert await graph.wait_child_up(10), "no reconnect to the brick"
            await top.writev(fd, b"second", 6, 0, None)
            assert bytes((await top.readv(fd, 64, 0, 0, None)).data) == b"first second"
            await top.release(fd, None)
        nursery.cancel_scope.cancel()
    assert events.count(Event.CHILD_UP) == 2 and Event.CHILD_DOWN in events
    assert (tmp_path / "f").read_bytes() == b"first second"


async def test_ipv6_remote_host(tmp_path):
    """An IPv6 address as remote-host is reached over IPv6 even though the
    address family defaults to inet, as GlusterFS's name.c decides."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    graph = Graph.from_text(brick_volfile(tmp_path, server_options={
        "transport.socket.bind-address": "::1", "transport.address-family": "inet6"}))
    try:
        async with graph.running():
            text = client_volfile(graph.top.port, graph.top.children[0].name)
            async with client_graph_text(text.replace("127.0.0.1", "::1")) as c:
                assert (await c.top.lookup(Loc.root(), None)).iatt.gfid == ROOT_GFID
                assert c.top.dump_state()["peer"].startswith("::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")


@contextlib.asynccontextmanager
async def client_graph_text(text: str):
    graph = Graph.from_text(text)
    async with graph.running():
        assert await graph.wait_child_up(10), "the client never came up"
        yield graph


@contextlib.contextmanager
def as_caller(pid: int, lk_owner: bytes):
    token = fops.caller.set(fops.Caller(pid=pid, lk_owner=lk_owner))
    try:
        yield
    finally:
        fops.caller.reset(token)


async def test_inodelk_contention_reaches_the_holder_as_upcall(tmp_path):
    """features/locks on our brick tells an inodelk's holder that another
    client waits for it; the holder's protocol/client turns the callback
    into an UPCALL event."""
    from xlators.protocol.client import Upcall, UpcallType
    wrlck = fops.Flock(type=fops.LockType.WRLCK)
    unlck = fops.Flock(type=fops.LockType.UNLCK)
    async with brick(tmp_path, locks=True) as (port, subvolume):
        async with client(port, subvolume) as a, client(port, subvolume) as b:
            upcalls = []
            a.root.listeners.append(
                lambda ev, src, data: upcalls.append(data) if ev == Event.UPCALL else None)
            root = Loc(gfid=ROOT_GFID)
            with as_caller(1, b"holder-a"):
                await a.top.inodelk("dom", root, fops.LockCmd.SETLK, wrlck, None)

            async def waiter():
                with as_caller(2, b"waiter-b"):
                    await b.top.inodelk("dom", root, fops.LockCmd.SETLKW, wrlck, None)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                with trio.fail_after(5):
                    while not upcalls:
                        await trio.sleep(0.01)
                with as_caller(1, b"holder-a"):
                    await a.top.inodelk("dom", root, fops.LockCmd.SETLK, unlck, None)
    (upcall,) = upcalls
    assert isinstance(upcall, Upcall) and upcall.event_type == UpcallType.INODELK_CONTENTION
    assert upcall.gfid == ROOT_GFID and upcall.message.domain == "dom"


async def test_auth_login_password(tmp_path):
    """username/password go in SETVOLUME; a wrong password is AUTH_FAILED
    (with the brick's reason) and CHILD_CONNECTING, never CHILD_UP."""
    login = {"auth.login.test-posix.allow": "alice", "auth.login.alice.password": "s3cret"}
    async with brick(tmp_path, server_options=login, allow=None) as (port, subvolume):
        async with client(port, subvolume, username="alice", password="s3cret") as good:
            assert (await good.top.lookup(Loc.root(), None)).iatt.gfid == ROOT_GFID
        graph = Graph.from_text(client_volfile(port, subvolume, username="alice",
                                               password="guess"))
        seen = []
        graph.root.listeners.append(lambda ev, src, data: seen.append((ev, data)))
        async with graph.running():
            with trio.fail_after(5):
                while not any(ev == Event.CHILD_DOWN for ev, _ in seen):
                    await trio.sleep(0.01)
    events = [ev for ev, _ in seen]
    assert events[:3] == [Event.AUTH_FAILED, Event.CHILD_CONNECTING, Event.CHILD_DOWN]
    assert seen[0][1] == "c-client: Authentication failed" and Event.CHILD_UP not in events


async def test_flush_reaches_the_brick_only_once_locks_were_sent(tmp_path):
    """A FLUSH only releases the closing owner's POSIX locks (and lease) at
    the brick: until this client sent an lk, it is answered by
    protocol/client (one RPC fewer per close, issue 17); once one was sent,
    every FLUSH goes, and releases that owner's locks taken through another
    fd of the file, as close(2) must."""
    text = (f"volume t-posix\n    type storage/posix\n    option directory {tmp_path}\n"
            "end-volume\nvolume t-locks\n    type features/locks\n    subvolumes t-posix\n"
            "end-volume\nvolume t-stats\n    type debug/io-stats\n    option count-fop-hits on\n"
            "    subvolumes t-locks\n"
            "end-volume\nvolume t-server\n    type protocol/server\n"
            "    option transport.socket.listen-port 0\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            "    option auth.addr.t-stats.allow *\n    subvolumes t-stats\nend-volume\n")
    graph = Graph.from_text(text)
    async with graph.running():
        stats = graph.by_name["t-stats"]

        def flushes() -> int:
            return stats.stats()["fops"].get("FLUSH", {}).get("hits", 0)
        async with client(graph.top.port, "t-stats") as a, \
                client(graph.top.port, "t-stats") as b:
            with as_caller(100, b"owner-a"):
                fd = await create(a.top, "f")
                await a.top.flush(fd, None)
                assert flushes() == 0
                # with xdata it goes as it is
                await a.top.flush(fd, {"some-key": 1})
                assert flushes() == 1
                other = Fd(gfid=fd.gfid, flags=os.O_RDWR)
                await a.top.open(Loc(gfid=fd.gfid), os.O_RDWR, other, None)
                wr = fops.Flock(type=fops.LockType.WRLCK, start=0, len=10, owner=b"owner-a")
                await a.top.lk(other, fops.LockCmd.SETLK, wr, None)
            theirs = fops.Flock(type=fops.LockType.WRLCK, start=0, len=10, owner=b"owner-b")
            fd_b = Fd(gfid=fd.gfid, flags=os.O_RDWR)
            with as_caller(200, b"owner-b"):
                await b.top.open(Loc(gfid=fd.gfid), os.O_RDWR, fd_b, None)
                with pytest.raises(FopError) as e:
                    await b.top.lk(fd_b, fops.LockCmd.SETLK, theirs, None)
                assert e.value.errno == errno.EAGAIN
            with as_caller(100, b"owner-a"):
                # close(2) of the first fd: the owner's lock (taken through
                # the other fd) goes, so the FLUSH must reach the brick
                await a.top.flush(fd, None)
                assert flushes() == 2
            with as_caller(200, b"owner-b"):
                await b.top.lk(fd_b, fops.LockCmd.SETLK, theirs, None)
                await b.top.release(fd_b, None)
            for f in (fd, other):
                await a.top.release(f, None)
            # a FLUSH on an fd this client never opened fails as before
            with pytest.raises(FopError) as e:
                await b.top.flush(Fd(gfid=GFID.random()), None)
            assert e.value.errno == errno.EBADFD
