"""protocol/client: options, handshake and failure handling.

Without a server: every protocol/client of glusterd 10.3's sample volfiles
loads; the SETVOLUME dict has the keys of a real GlusterFS 10.3 client's, in
its order (from the captures); fops fail at once with ENOTCONN when nothing
listens, EINVAL for a Loc missing what the request needs, EBADFD for an fd
not opened here.

Against a real GlusterFS 10 brick (`-m interop`, the private glusterd of
tests/realgluster.py): the conformance suite over a bare protocol/client,
found through glusterd's portmap; the fops of a killed brick failing with
ENOTCONN at once and the client coming back, with its open fd re-opened,
after `volume start force`; a stopped brick (SIGSTOP) turned into
CHILD_DOWN by ping-timeout; frame-timeout failing a call the brick never
answers.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import signal
import socket
from pathlib import Path

import pytest
import trio

from glusterpy import fops, volfile as vf
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.graph import Graph
from glusterpy.rpc import (ALL_PROGRAMS, HNDSK_PROGRAM, RpcCall, decode_message)
from glusterpy.volfile import VolfileError
from glusterpy.xlator import Event
from glusterpy.gfapi import AsyncVolume
from glusterpy.process import ProcessIdentity, set_process_identity
from xlators.protocol.client import ProtocolClient, RemoteFdCtx, Upcall, UpcallType

from conformance import CHECKS
from pcap import capture_path, rpc_records

VOLFILES = Path("/work/shared/glusterfs10-samples/volfiles")


def client_volfile(brick, *, name="t-client", host="127.0.0.1", **options) -> str:
    lines = [f"volume {name}", "    type protocol/client",
             f"    option remote-host {host}", f"    option remote-subvolume {brick}"]
    lines += [f"    option {k.replace('_', '-')} {v}" for k, v in options.items()]
    return "\n".join(lines + ["end-volume", ""])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Events:
    """Records what reaches the top of a graph."""

    def __init__(self, graph: Graph):
        self.seen: list[tuple[Event, object]] = []
        self.changed = trio.Event()
        graph.root.listeners.append(self)

    def __call__(self, event, source, data):
        self.seen.append((event, data))
        self.changed.set()
        self.changed = trio.Event()

    def count(self, event) -> int:
        return sum(1 for e, _ in self.seen if e == event)

    async def wait_for(self, event, after: int = 0, timeout: float = 30) -> float:
        """Wait until `event` has been seen more than `after` times; return
        how long that took."""
        start = trio.current_time()
        with trio.fail_after(timeout):
            while self.count(event) <= after:
                await self.changed.wait()
        return trio.current_time() - start


# -- without a server ------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(VOLFILES.glob("*.vol")), ids=lambda p: p.name)
def test_every_sample_protocol_client_loads(path):
    volfile = vf.load(path)
    clients = [v for v in volfile.volumes if v.type == "protocol/client"]
    for vdef in clients:
        xl = ProtocolClient(vdef.name, vdef.options)
        assert xl.opts.ping_timeout == int(vdef.options.get("ping-timeout", 42))
        assert xl.opts.frame_timeout == 1800


def test_options_glusterfs_defaults_and_refusals():
    xl = ProtocolClient("c", {"remote-host": "h", "remote-subvolume": "/b"})
    assert (xl.opts.ping_timeout, xl.opts.frame_timeout) == (42, 1800)
    assert xl.opts.send_gids and not xl.opts.strict_locks and not xl.opts.filter_O_DIRECT
    assert xl.opts.remote_port is None
    xl = ProtocolClient("c", {"remote-host": "h", "remote-subvolume": "/b",
                              "rpc-timeout": "30", "transport.remote-port": "49152"})
    assert (xl.opts.frame_timeout, xl.opts.remote_port) == (30, 49152)
    for options, message in [
            ({"remote-host": "h"}, "remote-subvolume"),
            ({"remote-host": "h", "remote-subvolume": "/b", "transport-type": "rdma"}, "rdma"),
            ({"remote-host": "h", "remote-subvolume": "/b", "ping-timeout": "2000"},
             "maximum"),
            ({"remote-host": "h", "remote-subvolume": "/b",
              "transport.socket.ssl-cipher-list": "NO-SUCH-CIPHER"}, "selects no cipher"),
            ({"remote-host": "h", "remote-subvolume": "/b", "no-such": "1"}, "no-such")]:
        text = "volume c\n    type protocol/client\n" + "".join(
            f"    option {k} {v}\n" for k, v in options.items()) + "end-volume\n"
        with pytest.raises(VolfileError, match=message):
            Graph.from_text(text)


def captured_setvolume_dicts():
    for stream, direction, record in rpc_records(capture_path("fuse-single.pcap")):
        msg = decode_message(memoryview(record)[4:])
        if isinstance(msg, RpcCall) and msg.prog == HNDSK_PROGRAM and msg.proc == 1:
            yield ALL_PROGRAMS.procedure(msg.prog, msg.vers, msg.proc).decode_args(msg.body).dict


@pytest.mark.skipif(not capture_path("fuse-single.pcap").exists(), reason="no captures")
def test_setvolume_dict_is_glusterfs10s():
    """Same keys in the same order as the FUSE client of the capture, whose
    volfile was trusted-test.tcp-fuse.vol; the same values where they do
    not name the process."""
    captured = next(captured_setvolume_dicts())
    vdef = vf.load(VOLFILES / "trusted-test.tcp-fuse.vol")["test-client-0"]
    xl = ProtocolClient(vdef.name, vdef.options)
    xl.identity = ProcessIdentity(process_name="fuse", volfile_key="/test")
    ours = xl.setvolume_dict()
    assert list(ours) == list(captured)
    differ = {"process-uuid"}
    for key in captured:
        if key not in differ:
            assert str(ours[key]) == captured[key].text, key
    # CTX_ID:<uuid>-GRAPH_ID:0-PID:<pid>-HOST:<host>-PC_NAME:<xlator>-RECON_NO:-<n>
    shape = r"CTX_ID:[0-9a-f-]{36}-GRAPH_ID:0-PID:\d+-HOST:.*?-PC_NAME:(.*)"
    theirs = re.fullmatch(shape, captured["process-uuid"].text)
    mine = re.fullmatch(shape, ours["process-uuid"])
    assert theirs and mine and mine.group(1) == theirs.group(1) == "test-client-0-RECON_NO:-0"


def test_fd_lock_ranges_merge_and_split():
    ctx = RemoteFdCtx(GFID.random(), os.O_RDWR, False, 3)
    ctx.add_lock(b"a", 0, 99)
    ctx.add_lock(b"b", 50, None)
    ctx.remove_lock(b"a", 10, 19)          # split a's range
    assert sorted(ctx.locks) == [(b"a", 0, 9), (b"a", 20, 99), (b"b", 50, None)]
    ctx.remove_lock(b"b", 60, None)         # unlock to EOF keeps the head
    assert (b"b", 50, 59) in ctx.locks
    ctx.remove_lock(b"a", 0, None)
    ctx.remove_lock(b"b", 0, None)
    assert ctx.locks == []


async def test_nothing_listening_means_enotconn_at_once():
    port = free_port()
    graph = Graph.from_text(client_volfile("/b", remote_port=port))
    events = Events(graph)
    async with graph.running():
        await events.wait_for(Event.CHILD_DOWN, timeout=5)
        with trio.fail_after(1):
            with pytest.raises(FopError) as e:
                await graph.top.stat(Loc.root(), None)
        assert e.value.errno == errno.ENOTCONN
        # a release of an fd the client never opened is not an error
        assert await graph.top.release(Fd(GFID.random()), None) is not None
    assert events.count(Event.CHILD_UP) == 0
    assert events.count(Event.CHILD_DOWN) == 1  # once, though it keeps retrying


async def test_bad_arguments_are_refused_before_the_wire():
    graph = Graph.from_text(client_volfile("/b", remote_port=free_port()))
    async with graph.running():
        top = graph.top
        for awaitable in (top.stat(Loc(pargfid=ROOT_GFID, name="x"), None),
                          top.mkdir(Loc(gfid=GFID.random()), 0o755, 0, None),
                          top.lookup(Loc(pargfid=ROOT_GFID), None),
                          top.rename(Loc(gfid=GFID.random()), Loc(pargfid=ROOT_GFID,
                                                                  name="y"), None)):
            with pytest.raises(FopError) as e:
                await awaitable
            assert e.value.errno == errno.EINVAL
        with pytest.raises(FopError) as e:
            await top.fstat(Fd(GFID.random()), None)
        assert e.value.errno == errno.EBADFD


# -- against a GlusterFS 10 brick ---------------------------------------------------


def brick_pid(volume: str) -> int:
    (pidfile,) = glob.glob(f"/var/run/gluster/vols/{volume}/*.pid")
    return int(Path(pidfile).read_text().strip())


async def wait_reaped(pid: int, timeout: float = 15) -> None:
    """Wait until a killed brick is gone from /proc.  glusterd's `volume
    start force` skips a brick whose pid file names a live process, and a
    zombie counts; here the orphaned brick's reaper (PID 1) takes seconds."""
    with trio.fail_after(timeout):
        while os.path.exists(f"/proc/{pid}"):
            await trio.sleep(0.1)


@pytest.fixture
def gf_volume(glusterd, tmp_path):
    """A started one-brick GlusterFS 10 volume: (name, brick path).  A brick
    left stopped by a failed test is continued before the harness ends it."""
    brick = tmp_path / "brick"
    brick.mkdir()
    name = glusterd.create_volume(brick)
    yield name, brick
    with contextlib.suppress(Exception):
        os.kill(brick_pid(name), signal.SIGCONT)
    glusterd.stop_volume(name)


@contextlib.asynccontextmanager
async def client_graph(brick, **options):
    graph = Graph.from_text(client_volfile(brick, **options))
    set_process_identity(graph, ProcessIdentity(process_name="glusterpy-tests"))
    events = Events(graph)
    async with graph.running():
        await events.wait_for(Event.CHILD_UP, timeout=15)
        yield graph, events


@pytest.mark.interop
@pytest.mark.parametrize("check_fn", CHECKS, ids=[c.__name__ for c in CHECKS])
async def test_conformance_against_glusterfs10_brick(check_fn, gf_volume):
    """tests/conformance.py over protocol/client -> a GlusterFS 10 brick
    whose port comes from glusterd's portmap."""
    _name, brick = gf_volume
    graph = Graph.from_text(client_volfile(brick))
    if check_fn.kind == "gfapi":
        async with AsyncVolume(graph, mount_timeout=15) as vol:
            await check_fn(vol)
    else:
        async with graph.running():
            assert await graph.wait_child_up(15)
            await check_fn(graph)


@pytest.mark.interop
async def test_killed_brick_enotconn_then_reconnect_and_reopen(gf_volume, glusterd):
    name, brick = gf_volume
    async with client_graph(brick) as (graph, events):
        top = graph.top
        fd = Fd(flags=os.O_RDWR)
        reply = await top.create(Loc(pargfid=ROOT_GFID, name="f"), os.O_RDWR | os.O_CREAT,
                                 0o644, 0, fd, {"gfid-req": GFID.random()})
        fd.gfid = reply.iatt.gfid
        await top.writev(fd, b"before", 0, 0, None)
        downs = events.count(Event.CHILD_DOWN)

        pid = brick_pid(name)
        os.kill(pid, signal.SIGKILL)
        took = await events.wait_for(Event.CHILD_DOWN, after=downs, timeout=5)
        assert took < 2
        with trio.fail_after(1):
            for awaitable in (top.stat(Loc(gfid=fd.gfid), None),
                              top.writev(fd, b"x", 0, 0, None)):
                with pytest.raises(FopError) as e:
                    await awaitable
                assert e.value.errno == errno.ENOTCONN
        assert fd.ctx[top].remote_fd == -1

        ups = events.count(Event.CHILD_UP)
        await wait_reaped(pid)
        await trio.to_thread.run_sync(glusterd.cli, "volume", "start", name, "force")
        await events.wait_for(Event.CHILD_UP, after=ups, timeout=20)
        # the fd was re-opened before CHILD_UP: it works as it did
        assert fd.ctx[top].remote_fd >= 0
        await top.writev(fd, b"after!", 6, 0, None)
        assert bytes((await top.readv(fd, 100, 0, 0, None)).data) == b"beforeafter!"
        await top.flush(fd, None)
        await top.release(fd, None)
    assert (brick / "f").read_bytes() == b"beforeafter!"


@pytest.mark.interop
async def test_ping_timeout_turns_a_stopped_brick_into_child_down(gf_volume):
    """SIGSTOP: the TCP connection stays up but nothing answers.  A call in
    flight starts the pings; after ping-timeout without a reply the client
    disconnects (CHILD_DOWN) and the call fails with ENOTCONN.  After
    SIGCONT the client reconnects by itself."""
    name, brick = gf_volume
    ping_timeout = 2
    async with client_graph(brick, ping_timeout=ping_timeout) as (graph, events):
        top = graph.top
        await top.lookup(Loc.root(), None)
        pid = brick_pid(name)
        downs, ups = events.count(Event.CHILD_DOWN), events.count(Event.CHILD_UP)
        os.kill(pid, signal.SIGSTOP)
        try:
            outcome = []

            async def stuck_call():
                try:
                    await top.statfs(Loc.root(), None)
                    outcome.append("ok")
                except FopError as e:
                    outcome.append(e.errno)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stuck_call)
                took = await events.wait_for(Event.CHILD_DOWN, after=downs,
                                             timeout=4 * ping_timeout + 5)
            # rpc-clnt-ping: between one and two ping-timeouts after the call;
            # the upper bound leaves room for a loaded machine (a CI run beside
            # other work took 6.0 s), it only tells "late" from "never"
            assert ping_timeout - 0.5 <= took <= 3 * ping_timeout + 3
            assert outcome == [errno.ENOTCONN]
        finally:
            os.kill(pid, signal.SIGCONT)
        await events.wait_for(Event.CHILD_UP, after=ups, timeout=20)
        assert (await top.lookup(Loc.root(), None)).iatt.gfid == ROOT_GFID


@pytest.mark.interop
async def test_frame_timeout_bails_out_one_call(gf_volume):
    """With pings off, a call the stopped brick never answers fails with
    ENOTCONN after frame-timeout; the connection itself stays."""
    name, brick = gf_volume
    async with client_graph(brick, ping_timeout=0, frame_timeout=2) as (graph, events):
        top = graph.top
        pid = brick_pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            start = trio.current_time()
            with pytest.raises(FopError) as e:
                with trio.fail_after(10):
                    await top.statfs(Loc.root(), None)
            assert e.value.errno == errno.ENOTCONN
            assert 1.5 <= trio.current_time() - start <= 4
        finally:
            os.kill(pid, signal.SIGCONT)
        assert events.count(Event.CHILD_DOWN) == 0
        assert (await top.statfs(Loc.root(), None)).statvfs.bsize > 0


@pytest.mark.interop
async def test_cache_invalidation_reaches_the_graph_as_upcall(gf_volume, glusterd):
    """With features.cache-invalidation on, the brick's upcall translator
    tells one client (over the callback program) what another changed."""
    name, brick = gf_volume
    await trio.to_thread.run_sync(glusterd.cli, "volume", "set", name,
                                  "features.cache-invalidation", "on")
    async with client_graph(brick) as (a, a_events), client_graph(brick) as (b, _):
        fd = Fd(flags=os.O_RDWR)
        reply = await a.top.create(Loc(pargfid=ROOT_GFID, name="shared"),
                                   os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                                   {"gfid-req": GFID.random()})
        gfid = reply.iatt.gfid
        await a.top.release(fd, None)
        upcalls = []
        with trio.fail_after(15):  # the brick applies the option a moment later
            while not upcalls:
                await a.top.lookup(Loc(pargfid=ROOT_GFID, name="shared"), None)
                await b.top.setattr(Loc(gfid=gfid), fops.Iatt(mode=0o600),
                                    fops.SET_ATTR_MODE, None)
                await trio.sleep(0.2)
                upcalls = [d for e, d in a_events.seen if e == Event.UPCALL]
    upcall = upcalls[0]
    assert isinstance(upcall, Upcall) and upcall.event_type == UpcallType.CACHE_INVALIDATION
    assert upcall.gfid == gfid
    assert upcall.message.stat.mode & 0o777 == 0o600


@pytest.mark.interop
async def test_strict_locks_leaves_a_locked_fd_closed_after_reconnect(gf_volume, glusterd):
    """The brick drops a client's locks with its connection; with
    strict-locks the client does not re-open an fd that held some, so the
    application learns (EBADFD) instead of writing without its lock."""
    name, brick = gf_volume
    async with client_graph(brick, strict_locks="on") as (graph, events):
        top = graph.top
        fds = {}
        for n in ("locked", "free"):
            fd = fds[n] = Fd(flags=os.O_RDWR)
            reply = await top.create(Loc(pargfid=ROOT_GFID, name=n), os.O_RDWR | os.O_CREAT,
                                     0o644, 0, fd, {"gfid-req": GFID.random()})
            fd.gfid = reply.iatt.gfid
        lock = fops.Flock(type=fops.LockType.WRLCK, start=0, len=10, owner=b"owner-01")
        await top.lk(fds["locked"], fops.LockCmd.SETLK, lock, None)
        assert fds["locked"].ctx[top].locks == [(b"owner-01", 0, 9)]

        pid = brick_pid(name)
        ups = events.count(Event.CHILD_UP)
        os.kill(pid, signal.SIGKILL)
        await wait_reaped(pid)
        await trio.to_thread.run_sync(glusterd.cli, "volume", "start", name, "force")
        await events.wait_for(Event.CHILD_UP, after=ups, timeout=20)

        assert (await top.fstat(fds["free"], None)).iatt.gfid == fds["free"].gfid
        for awaitable in (top.fstat(fds["locked"], None),
                          top.writev(fds["locked"], b"unlocked!", 0, 0, None)):
            with pytest.raises(FopError) as e:
                await awaitable
            assert e.value.errno == errno.EBADFD
        for fd in fds.values():
            await top.release(fd, None)
