"""features/locks on a real storage/posix brick.

Every test runs the graph storage/posix -> features/locks and calls fops on
its top.  Clients and lock owners are simulated by setting `fops.caller` in
each task, as protocol/server does for each request.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glusterpy import fops
from glusterpy.fops import (ActiveLock, Caller, EntrylkCmd, EntrylkType, Fd, Flock, FopError,
                            Loc, LockCmd, LockType)
from glusterpy.graph import Graph
from glusterpy.rpc.callback import (GF_CBK_ENTRYLK_CONTENTION, GF_CBK_INODELK_CONTENTION,
                                    EntrylkContention, InodelkContention)
from glusterpy.xlator import Event, Translator
from xlators.features.locks import LLONG_MAX, Locks, LockContention

RD, WR, UN = LockType.RDLCK, LockType.WRLCK, LockType.UNLCK
SETLK, SETLKW, GETLK = LockCmd.SETLK, LockCmd.SETLKW, LockCmd.GETLK
LOCK, LOCK_NB, UNLOCK = EntrylkCmd.LOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.UNLOCK
ERD, EWR = EntrylkType.RDLCK, EntrylkType.WRLCK


class Client:
    """Stands for protocol/server's per-connection client object."""

    def __init__(self, uid: str):
        self.client_uid = uid

    def __repr__(self) -> str:
        return f"<Client {self.client_uid}>"


def locks_volfile(directory, **options) -> str:
    lines = ["volume test-posix", "    type storage/posix",
             f'    option directory "{directory}"', "end-volume",
             "volume test-locks", "    type features/locks"]
    lines += [f"    option {key.replace('_', '-')} {value}" for key, value in options.items()]
    lines += ["    subvolumes test-posix", "end-volume"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def locks_graph(brick):
    """`async with locks_graph(**options) as graph:` runs posix -> locks."""
    @contextlib.asynccontextmanager
    async def run(**options):
        graph = Graph.from_text(locks_volfile(brick, **options))
        async with graph.running():
            yield graph
    return run


@contextlib.contextmanager
def acting_as(client, owner: bytes, pid: int = 100):
    token = fops.caller.set(Caller(pid=pid, lk_owner=owner, client=client))
    try:
        yield
    finally:
        fops.caller.reset(token)


async def new_file(top, name="f") -> tuple[Loc, Fd]:
    fd = Fd()
    with acting_as(None, b"creator"):
        reply = await top.create(Loc.child(Loc.root(), name), os.O_RDWR | os.O_CREAT,
                                 0o644, 0, fd)
    return Loc.child(Loc.root(), name, reply.iatt.gfid), fd


async def new_dir(top, name="d") -> Loc:
    reply = await top.mkdir(Loc.child(Loc.root(), name), 0o755, 0)
    return Loc.child(Loc.root(), name, reply.iatt.gfid)


def fl(type_, start=0, length=0, pid=0) -> Flock:
    return Flock(type=type_, start=start, len=length, pid=pid)


async def expect_errno(err, coro):
    with pytest.raises(FopError) as info:
        await coro
    assert info.value.errno == err, info.value


class Requests:
    """Lock requests running in their own tasks; `done` records the order
    in which they completed and how (a reply or an errno)."""

    def __init__(self, nursery):
        self.nursery = nursery
        self.done: list = []

    async def start(self, tag, client, owner, fop, *args):
        """Start a request and return once it is blocked (or finished)."""
        async def run():
            with acting_as(client, owner):
                try:
                    result = await fop(*args)
                except FopError as e:
                    result = e.errno
            self.done.append((tag, result))
        self.nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()

    @property
    def tags(self):
        return [tag for tag, _ in self.done]


def inode_state(top, gfid) -> dict:
    return top.dump_state().get(str(gfid), {})


def domain_state(top, gfid, domain) -> dict:
    empty = {"inodelk": [], "inodelk-blocked": [], "entrylk": [], "entrylk-blocked": []}
    return inode_state(top, gfid).get("domains", {}).get(domain, empty)


def posix_ranges(top, gfid) -> list:
    """The granted POSIX locks as (owner, type, start, len), sorted."""
    return sorted(((lk["owner"], lk["type"], lk["start"], lk["len"])
                   for lk in inode_state(top, gfid).get("posixlk", [])),
                  key=lambda lock: (lock[0], lock[2]))


# ---------------------------------------------------------------------------
# inodelk / finodelk


async def test_inodelk_reads_share_writes_conflict(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(RD, 0, 10))
            # an owner's own locks never conflict, and stay separate locks
            await top.finodelk("dom", fd, SETLK, fl(WR, 5, 10))
        with acting_as(B, b"b"):
            await top.inodelk("dom", loc, SETLK, fl(RD, 20, 10))
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 12, 1)))
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(WR, 0, 1)))
        # the same lk_owner on another connection is another owner
        with acting_as(B, b"a"):
            await expect_errno(errno.EAGAIN, top.finodelk("dom", fd, SETLK, fl(WR, 9, 1)))
        assert len(domain_state(top, loc.gfid, "dom")["inodelk"]) == 3


async def test_inodelk_domains_are_independent(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("vol-replicate-0", loc, SETLK, fl(WR))
        with acting_as(B, b"b"):
            await top.inodelk("vol-replicate-0:self-heal", loc, SETLK, fl(WR))
            await expect_errno(errno.EAGAIN, top.inodelk("vol-replicate-0", loc, SETLK, fl(WR)))


async def test_inodelk_waiters_are_granted_in_order(locks_graph):
    clients = {tag: Client(tag) for tag in "ABCD"}
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(clients["A"], b"A"):
            await top.inodelk("dom", loc, SETLK, fl(WR))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            for tag in "BCD":
                await requests.start(tag, clients[tag], tag.encode(),
                                     top.inodelk, "dom", loc, SETLKW, fl(WR))
            assert requests.done == []
            blocked = domain_state(top, loc.gfid, "dom")["inodelk-blocked"]
            assert [lk["owner"] for lk in blocked] == [b"B".hex(), b"C".hex(), b"D".hex()]
            for holder, expected in zip("ABC", (["B"], ["B", "C"], ["B", "C", "D"])):
                with acting_as(clients[holder], holder.encode()):
                    await top.inodelk("dom", loc, SETLK, fl(UN))
                await trio.testing.wait_all_tasks_blocked()
                assert requests.tags == expected
        assert all(result == fops.Reply() for _, result in requests.done)
        granted = domain_state(top, loc.gfid, "dom")["inodelk"]
        assert [lk["owner"] for lk in granted] == [b"D".hex()]


async def test_inodelk_grantable_lock_waits_behind_earlier_waiter(locks_graph):
    """GlusterFS's starvation rule: a compatible request queues behind a
    conflicting waiter, unless its owner already has a lock in the domain."""
    A, B, C = Client("A"), Client("B"), Client("C")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(RD, 0, 100))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", B, b"b", top.inodelk, "dom", loc, SETLKW, fl(WR, 0, 10))
            with acting_as(C, b"c"):
                await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 5, 1)))
                # no conflict with the waiter: granted
                await top.inodelk("dom", loc, SETLK, fl(RD, 50, 1))
            with acting_as(A, b"a"):  # nested lock of a holder
                await top.inodelk("dom", loc, SETLK, fl(RD, 5, 1))
                await top.inodelk("dom", loc, SETLK, fl(UN, 5, 1))
                await top.inodelk("dom", loc, SETLK, fl(UN, 0, 100))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B"]


async def test_inodelk_unlock_needs_the_owner_and_the_exact_range(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(WR, 0, 10))
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(UN, 0, 5)))
            await expect_errno(errno.EINVAL, top.inodelk("other", loc, SETLK, fl(UN, 0, 10)))
        with acting_as(B, b"a"):
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(UN, 0, 10)))
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLKW, fl(UN, 0, 10))
        assert top.dump_state() == {}


async def test_inodelk_refusals(locks_graph):
    A = Client("A")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            # GlusterFS's inodelk has no GETLK
            await expect_errno(errno.ENOTSUP, top.inodelk("dom", loc, GETLK, fl(WR)))
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(WR, -1, 1)))
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(WR, 0, -1)))
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(7)))
        for owner in (b"", bytes(8)):  # a null lk_owner
            with acting_as(A, owner):
                await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(WR)))
        assert top.dump_state() == {}


async def test_inodelk_metadata_range_uses_the_metadata_domain(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("vol", loc, SETLK, fl(WR, LLONG_MAX - 1, 0))
        assert domain_state(top, loc.gfid, "vol:metadata")["inodelk"]
        with acting_as(B, b"b"):
            await top.inodelk("vol", loc, SETLK, fl(WR, 0, 0))
            await expect_errno(errno.EAGAIN, top.inodelk("vol:metadata", loc, SETLK, fl(WR)))
        with acting_as(A, b"a"):  # unlock through either name
            await top.inodelk("vol:metadata", loc, SETLK, fl(UN, LLONG_MAX - 1, 0))


async def test_inodelk_loc_without_gfid_is_resolved(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", Loc.child(Loc.root(), "f"), SETLK, fl(WR))
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, top.finodelk("dom", fd, SETLK, fl(WR)))


# ---------------------------------------------------------------------------
# entrylk / fentrylk


async def test_entrylk_names_and_the_whole_directory(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        d = await new_dir(top)
        with acting_as(A, b"a"):
            await top.entrylk("dom", d, "a", LOCK_NB, ERD)
        with acting_as(B, b"b"):
            await top.entrylk("dom", d, "b", LOCK_NB, EWR)
            # the type plays no part: two read locks on one name conflict
            await expect_errno(errno.EAGAIN, top.entrylk("dom", d, "a", LOCK_NB, ERD))
            await expect_errno(errno.EAGAIN, top.entrylk("dom", d, None, LOCK_NB, ERD))
            await top.entrylk("other-domain", d, None, LOCK_NB, EWR)
        with acting_as(A, b"a"):
            await expect_errno(errno.EAGAIN, top.entrylk("dom", d, None, LOCK_NB, EWR))
            await top.entrylk("dom", d, "c", LOCK_NB, EWR)
        with acting_as(B, b"b"):
            await top.entrylk("dom", d, "b", UNLOCK, EWR)
        with acting_as(A, b"a"):  # the owner of every name may lock them all
            await top.entrylk("dom", d, None, LOCK_NB, EWR)
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, top.entrylk("dom", d, "zzz", LOCK_NB, ERD))


async def test_entrylk_unlock_must_match_name_owner_and_type(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        d = await new_dir(top)
        with acting_as(A, b"a"):
            await top.entrylk("dom", d, "x", LOCK, EWR)
            await expect_errno(errno.EINVAL, top.entrylk("dom", d, "x", UNLOCK, ERD))
            await expect_errno(errno.EINVAL, top.entrylk("dom", d, "y", UNLOCK, EWR))
            await expect_errno(errno.EINVAL, top.entrylk("dom", d, "x", 9, EWR))
        with acting_as(B, b"a"):
            await expect_errno(errno.EINVAL, top.entrylk("dom", d, "x", UNLOCK, EWR))
        with acting_as(A, b""):
            await expect_errno(errno.EINVAL, top.entrylk("dom", d, "x", LOCK, EWR))
        with acting_as(A, b"a"):
            await top.entrylk("dom", d, "x", UNLOCK, EWR)
        assert top.dump_state() == {}


async def test_entrylk_waiters_in_order_and_fentrylk(locks_graph):
    clients = {tag: Client(tag) for tag in "ABC"}
    async with locks_graph() as graph:
        top = graph.top
        d = await new_dir(top)
        dfd = Fd()
        await top.opendir(d, dfd)
        with acting_as(clients["A"], b"A"):
            await top.fentrylk("dom", dfd, None, LOCK, EWR)
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", clients["B"], b"B", top.entrylk, "dom", d, "n", LOCK, EWR)
            await requests.start("C", clients["C"], b"C", top.fentrylk, "dom", dfd, "n", LOCK,
                                 ERD)
            with acting_as(clients["A"], b"A"):
                await top.entrylk("dom", d, None, UNLOCK, EWR)
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B"]
            with acting_as(clients["B"], b"B"):
                await top.fentrylk("dom", dfd, "n", UNLOCK, EWR)
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B", "C"]


# ---------------------------------------------------------------------------
# lk: POSIX record locks


async def test_lk_getlk_reports_the_conflicting_lock(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.lk(fd, SETLK, fl(WR, 10, 10, pid=42))
            mine = await top.lk(fd, GETLK, fl(WR, 0, 0, pid=1))
            assert mine.flock.type == UN
        with acting_as(B, b"b", pid=7):
            reply = await top.lk(fd, GETLK, fl(RD, 0, 100, pid=7))
            assert reply.flock == Flock(WR, os.SEEK_SET, 10, 10, 42, b"a")
            free = await top.lk(fd, GETLK, fl(WR, 20, 5, pid=7))
            assert free.flock == Flock(UN, os.SEEK_SET, 20, 5, 7, b"b")


async def test_lk_setlk_fails_and_setlkw_waits(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.lk(fd, SETLK, fl(RD, 0, 100))
        with acting_as(B, b"b"):
            await top.lk(fd, SETLK, fl(RD, 50, 100))
            await expect_errno(errno.EAGAIN, top.lk(fd, SETLK, fl(WR, 99, 1)))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", B, b"b", top.lk, fd, SETLKW, fl(WR, 90, 0, pid=9))
            assert requests.done == []
            with acting_as(A, b"a"):  # A's lock ends at 99: B's waiter still blocked
                await top.lk(fd, SETLK, fl(UN, 0, 50))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.done == []
            with acting_as(A, b"a"):
                reply = await top.lk(fd, SETLK, fl(UN, 0, 0))
            assert reply.flock.type == RD  # the fd still holds B's locks
            await trio.testing.wait_all_tasks_blocked()
        [(_, granted)] = requests.done
        assert granted.flock == Flock(WR, os.SEEK_SET, 90, 0, 9, b"b")
        # B's waiting request first gave up B's own read lock in its range
        assert posix_ranges(top, fd.gfid) == [(b"b".hex(), "READ", 50, 40),
                                              (b"b".hex(), "WRITE", 90, 0)]


async def test_lk_waiters_are_granted_in_order(locks_graph):
    clients = {tag: Client(tag) for tag in "ABC"}
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(clients["A"], b"A"):
            await top.lk(fd, SETLK, fl(WR, 0, 10))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            for tag in "BC":
                await requests.start(tag, clients[tag], tag.encode(), top.lk, fd, SETLKW,
                                     fl(WR, 5, 10))
            with acting_as(clients["A"], b"A"):
                await top.lk(fd, SETLK, fl(UN, 0, 10))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B"]
            with acting_as(clients["B"], b"B"):
                await top.lk(fd, SETLK, fl(UN, 0, 0))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B", "C"]


async def test_lk_splits_and_merges_an_owners_ranges(locks_graph):
    A = Client("A")
    a = b"a".hex()
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.lk(fd, SETLK, fl(RD, 0, 101))
            reply = await top.lk(fd, SETLK, fl(UN, 40, 20))
            assert reply.flock.type == RD  # the fd still holds locks
            assert posix_ranges(top, fd.gfid) == [(a, "READ", 0, 40), (a, "READ", 60, 41)]
            await top.lk(fd, SETLK, fl(WR, 30, 41))
            assert posix_ranges(top, fd.gfid) == [(a, "READ", 0, 30), (a, "WRITE", 30, 41),
                                                  (a, "READ", 71, 30)]
            # overlapping locks of one type merge; touching ones stay apart
            await top.lk(fd, SETLK, fl(WR, 60, 20))
            await top.lk(fd, SETLK, fl(WR, 200, 0))
            await top.lk(fd, SETLK, fl(WR, 190, 10))
            assert posix_ranges(top, fd.gfid) == [(a, "READ", 0, 30), (a, "WRITE", 30, 50),
                                                  (a, "READ", 80, 21), (a, "WRITE", 190, 10),
                                                  (a, "WRITE", 200, 0)]
            # a negative length locks the bytes before start
            await top.lk(fd, SETLK, fl(UN, 0, 0))
            await top.lk(fd, SETLK, fl(RD, 10, -5))
            assert posix_ranges(top, fd.gfid) == [(a, "READ", 5, 5)]
            await expect_errno(errno.EINVAL, top.lk(fd, SETLK, fl(RD, 3, -5)))
            await expect_errno(errno.EINVAL, top.lk(fd, SETLK, fl(RD, -1, 5)))
            await expect_errno(errno.EINVAL, top.lk(fd, SETLK, fl(RD, LLONG_MAX, 2)))
            # what the wire carries: a u_quad holding the negative length
            await top.lk(fd, SETLK, fl(UN, 10, (1 << 64) - 5))
        assert top.dump_state() == {}


async def test_lk_upgrading_readers_do_not_deadlock(locks_graph):
    """SETLKW first drops the owner's own locks in the range (GlusterFS's
    pre-lock unlock), so two readers upgrading at once both get through."""
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        for client, owner in ((A, b"a"), (B, b"b")):
            with acting_as(client, owner):
                await top.lk(fd, SETLK, fl(RD, 0, 10))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("A", A, b"a", top.lk, fd, SETLKW, fl(WR, 0, 10))
            assert requests.done == []
            assert posix_ranges(top, fd.gfid) == [(b"b".hex(), "READ", 0, 10)]
            await requests.start("B", B, b"b", top.lk, fd, SETLKW, fl(WR, 0, 10))
            assert requests.tags == ["B"]
            with acting_as(B, b"b"):
                await top.lk(fd, SETLK, fl(UN, 0, 10))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B", "A"]
        assert posix_ranges(top, fd.gfid) == [(b"a".hex(), "WRITE", 0, 10)]


async def test_lk_refusals(locks_graph):
    A = Client("A")
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(A, b"a"):
            for cmd in (LockCmd.RESLK_LCK, LockCmd.RESLK_LCKW, LockCmd.RESLK_UNLCK,
                        LockCmd.GETLK_FD):
                await expect_errno(errno.ENOTSUP, top.lk(fd, cmd, fl(WR)))
            await expect_errno(errno.EINVAL, top.lk(fd, SETLK, fl(5)))
            await expect_errno(errno.EBADFD, top.lk(Fd(), SETLK, fl(WR)))
        with acting_as(A, b""):
            await expect_errno(errno.EINVAL, top.lk(fd, SETLK, fl(WR)))


async def test_lk_flush_drops_the_owners_locks_on_every_fd(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd1 = await new_file(top)
        fd2 = Fd()
        await top.open(loc, os.O_RDWR, fd2)
        with acting_as(A, b"a"):
            await top.lk(fd1, SETLK, fl(WR, 0, 10))
            await top.lk(fd2, SETLK, fl(WR, 20, 10))
        with acting_as(A, b"a2"):
            await top.lk(fd2, SETLK, fl(WR, 40, 10))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", B, b"b", top.lk, fd1, SETLKW, fl(RD, 0, 30))
            with acting_as(A, b"a"):  # close(2) of any fd drops all of the owner's locks
                await top.flush(fd2)
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["B"]
        assert posix_ranges(top, loc.gfid) == [(b"a2".hex(), "WRITE", 40, 10),
                                               (b"b".hex(), "READ", 0, 30)]


async def test_lk_release_and_ownerless_flush_drop_the_fds_locks(locks_graph):
    A, B, C = Client("A"), Client("B"), Client("C")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd_a1 = await new_file(top)
        fd_a2, fd_b, fd_c = Fd(), Fd(), Fd()
        for fd in (fd_a2, fd_b, fd_c):
            await top.open(loc, os.O_RDWR, fd)
        with acting_as(A, b"a"):
            await top.lk(fd_a1, SETLK, fl(WR, 0, 10))
            await top.lk(fd_a2, SETLK, fl(RD, 100, 10))
        with acting_as(B, b"b"):
            await top.lk(fd_b, SETLK, fl(RD, 300, 10))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", B, b"b", top.lk, fd_b, SETLKW, fl(WR, 100, 1))
            await requests.start("C", C, b"c", top.lk, fd_c, SETLKW, fl(WR, 0, 10))
            await requests.start("A", A, b"a", top.lk, fd_a2, SETLKW, fl(WR, 300, 1))
            with acting_as(A, b""):  # protocol/server's flush for a departed client
                await top.flush(fd_a1)
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["C"]  # fd_a1's lock went; fd_a2's holds B back
            await top.release(fd_a2)
            await trio.testing.wait_all_tasks_blocked()
        results = dict(requests.done)
        assert results["A"] == errno.EAGAIN  # a waiter of the released fd
        assert results["B"].flock.start == 100 and results["C"].flock.start == 0
        assert posix_ranges(top, loc.gfid) == [(b"b".hex(), "WRITE", 100, 1),
                                               (b"b".hex(), "READ", 300, 10),
                                               (b"c".hex(), "WRITE", 0, 10)]


# ---------------------------------------------------------------------------
# POSIX locks against a per-byte reference model

CELLS = 16  # bytes 0..15, and cell 16 standing for [16, end of file)
OWNERS = ((Client("A"), b"o1"), (Client("A"), b"o2"), (Client("B"), b"o1"))


@st.composite
def lock_requests(draw):
    start = draw(st.integers(0, CELLS - 1))
    length = draw(st.integers(0, CELLS - start))  # 0: to the end of the file
    return (draw(st.integers(0, len(OWNERS) - 1)), draw(st.sampled_from([RD, WR, UN])),
            start, length)


def cells_of(start, length):
    return range(start, CELLS + 1) if length == 0 else range(start, start + length)


def model_conflict(model, owner, type_, start, length):
    return any(other != owner and WR in (held, type_)
               for cell in cells_of(start, length) for other, held in model[cell].items())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(lock_requests(), lock_requests()), max_size=25))
async def test_lk_matches_a_per_byte_model(brick, steps):
    graph = Graph.from_text(locks_volfile(brick))
    async with graph.running():
        top = graph.top
        _, fd = await new_file(top, f"model-{os.urandom(4).hex()}")
        model = [dict() for _ in range(CELLS + 1)]
        for (who, type_, start, length), probe in steps:
            client, owner = OWNERS[who]
            conflict = type_ != UN and model_conflict(model, who, type_, start, length)
            with acting_as(client, owner):
                if conflict:
                    await expect_errno(errno.EAGAIN, top.lk(fd, SETLK, fl(type_, start, length)))
                else:
                    await top.lk(fd, SETLK, fl(type_, start, length))
                    for cell in cells_of(start, length):
                        if type_ == UN:
                            model[cell].pop(who, None)
                        else:
                            model[cell][who] = type_
            active = (await top.getactivelk(Loc(gfid=fd.gfid))).locks
            ours = [dict() for _ in range(CELLS + 1)]
            for lock in active:
                holder = next(i for i, (c, o) in enumerate(OWNERS)
                              if c.client_uid == lock.client_uid and o == lock.flock.owner)
                for cell in cells_of(lock.flock.start, lock.flock.len):
                    assert holder not in ours[cell], "an owner's locks overlap"
                    ours[cell][holder] = lock.flock.type
            assert ours == model
            # GETLK answers as the model does, naming a real conflicting lock
            pwho, ptype, pstart, plen = probe
            pclient, powner = OWNERS[pwho]
            with acting_as(pclient, powner):
                answer = (await top.lk(fd, GETLK, fl(ptype, pstart, plen))).flock
            if not model_conflict(model, pwho, ptype, pstart, plen):
                assert answer.type == UN
            else:
                assert WR in (answer.type, ptype) and answer.owner != b"" and \
                    set(cells_of(answer.start, answer.len)) & set(cells_of(pstart, plen))
                assert any(a.flock == answer for a in active)


# ---------------------------------------------------------------------------
# A departed client


async def test_client_disconnected_releases_everything_and_wakes_waiters(locks_graph):
    X, Y = Client("X"), Client("Y")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        d = await new_dir(top)
        with acting_as(X, b"x"):
            await top.inodelk("dom", loc, SETLK, fl(WR))
            await top.entrylk("dom", d, "name", LOCK, EWR)
            await top.lk(fd, SETLK, fl(WR, 0, 10))
        with acting_as(Y, b"y"):
            await top.inodelk("dom2", loc, SETLK, fl(WR))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("y-inode", Y, b"y", top.inodelk, "dom", loc, SETLKW, fl(RD))
            await requests.start("y-entry", Y, b"y", top.entrylk, "dom", d, None, LOCK, ERD)
            await requests.start("y-posix", Y, b"y", top.lk, fd, SETLKW, fl(RD, 5, 1))
            await requests.start("x-inode", X, b"x", top.inodelk, "dom2", loc, SETLKW, fl(RD))
            assert requests.done == []
            await graph.client_disconnected(X)
            await trio.testing.wait_all_tasks_blocked()
        results = dict(requests.done)
        assert results["x-inode"] == errno.EAGAIN
        assert results["y-inode"] == fops.Reply() and results["y-entry"] == fops.Reply()
        assert results["y-posix"].flock.start == 5
        assert "<Client X>" not in repr(top.dump_state())
        await graph.client_disconnected(X)  # nothing left: a no-op
        with acting_as(X, b"x"):  # a request still in flight when X went
            await expect_errno(errno.ENOTCONN, top.inodelk("dom", loc, SETLK, fl(RD, 9, 1)))
            await expect_errno(errno.ENOTCONN, top.entrylk("dom", d, "late", LOCK_NB, ERD))
            await expect_errno(errno.ENOTCONN, top.lk(fd, SETLKW, fl(RD, 50, 1)))
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(UN)))
        assert "<Client X>" not in repr(top.dump_state())


async def test_cancelled_waiters_leave_nothing_behind(locks_graph):
    A, B, C = Client("A"), Client("B"), Client("C")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        d = await new_dir(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(RD))
            await top.entrylk("dom", d, "n", LOCK, EWR)
            await top.lk(fd, SETLK, fl(WR))
        before = top.dump_state()
        with acting_as(B, b"b"):
            for request in (lambda: top.inodelk("dom", loc, SETLKW, fl(WR)),
                            lambda: top.entrylk("dom", d, "n", LOCK, EWR),
                            lambda: top.lk(fd, SETLKW, fl(RD, 0, 1))):
                with trio.move_on_after(0.01) as scope:
                    await request()
                assert scope.cancelled_caught
        assert top.dump_state() == before
        with acting_as(C, b"c"):
            # no waiter left to queue behind (the starvation rule)
            await top.inodelk("dom", loc, SETLK, fl(RD))


# ---------------------------------------------------------------------------
# Removal of inodes others hold inodelks on


async def test_unlink_waits_for_other_clients_inodelks(locks_graph):
    X, Y, Z = Client("X"), Client("Y"), Client("Z")
    async with locks_graph() as graph:
        top = graph.top
        upcalls = []
        graph.root.listeners.append(
            lambda event, source, data: upcalls.append(data) if event == Event.UPCALL else None)
        loc, _ = await new_file(top)
        with acting_as(X, b"x"):
            await top.inodelk("dom", loc, SETLK, fl(WR, 0, 1))
        with acting_as(Y, b"y"):  # the remover's own locks do not hold it back
            await top.inodelk("dom", loc, SETLK, fl(WR, 5, 1))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            victim = Loc.child(Loc.root(), "f")  # no gfid: looked up
            await requests.start("unlink", Y, b"y", top.unlink, victim, 0)
            assert requests.done == []
            assert [u.client for u in upcalls] == [X]
            with acting_as(Z, b"z"):  # new locks of other clients wait for the removal
                await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 9, 1)))
            await requests.start("z", Z, b"z", top.inodelk, "dom", loc, SETLKW, fl(RD, 9, 1))
            with acting_as(X, b"x"):  # X holds one already: not held back
                await top.inodelk("dom", loc, SETLK, fl(RD, 20, 1))
                await top.inodelk("dom", loc, SETLK, fl(UN, 20, 1))
                await top.inodelk("dom", loc, SETLK, fl(UN, 0, 1))
            await trio.testing.wait_all_tasks_blocked()
        assert requests.tags == ["unlink", "z"]
        await expect_errno(errno.ENOENT, top.lookup(Loc.child(Loc.root(), "f")))


async def test_rename_over_a_locked_name_waits(locks_graph):
    X, Y = Client("X"), Client("Y")
    async with locks_graph() as graph:
        top = graph.top
        await new_file(top, "f")
        victim, _ = await new_file(top, "g")
        with acting_as(X, b"x"):
            await top.inodelk("dom", victim, SETLK, fl(RD))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("rename", Y, b"y", top.rename, Loc.child(Loc.root(), "f"),
                                 Loc.child(Loc.root(), "g"))
            assert requests.done == []
            with acting_as(X, b"x"):
                await top.inodelk("dom", victim, SETLK, fl(UN))
            await trio.testing.wait_all_tasks_blocked()
        assert requests.tags == ["rename"]
        await expect_errno(errno.ENOENT, top.lookup(Loc.child(Loc.root(), "f")))


async def test_cancelled_removal_lets_held_back_locks_through(locks_graph):
    X, Y, Z = Client("X"), Client("Y"), Client("Z")
    async with locks_graph() as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(X, b"x"):
            await top.inodelk("dom", loc, SETLK, fl(WR, 0, 1))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            removal = trio.CancelScope()
            nursery.start_soon(_unlink_as, Y, top, loc, removal)
            await trio.testing.wait_all_tasks_blocked()
            await requests.start("z", Z, b"z", top.inodelk, "dom", loc, SETLKW, fl(RD, 5, 1))
            assert requests.done == []  # held back by the waiting removal
            removal.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert requests.tags == ["z"]
        state = inode_state(top, loc.gfid)
        assert (state["removals-running"], state["removals-waiting"]) == (0, 0)
        assert (await top.lookup(loc)).iatt.gfid == loc.gfid  # never removed


async def _unlink_as(client, top, loc, scope):
    with scope, acting_as(client, b"y"):
        await top.unlink(loc, 0)


# ---------------------------------------------------------------------------
# Counts in xdata


async def test_lock_counts_in_reply_xdata(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        d = await new_dir(top)
        fd = Fd()
        await top.create(Loc.child(d, "f"), os.O_RDWR, 0o644, 0, fd)
        floc = Loc.child(d, "f", fd.gfid)
        with acting_as(A, b"a"):
            await top.inodelk("vol-replicate-0", floc, SETLK, fl(WR, 0, 10))
            await top.inodelk("vol-replicate-0:self-heal", floc, SETLK, fl(WR))
            await top.entrylk("vol-replicate-0", d, "f", LOCK, EWR)
            await top.lk(fd, SETLK, fl(RD, 0, 1))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)  # waiting locks count too
            await requests.start("B", B, b"b", top.finodelk, "vol-replicate-0", fd, SETLKW,
                                 fl(WR, 5, 1))
            ask = {"glusterfs.inodelk-count": 0, "glusterfs.entrylk-count": 0,
                   "glusterfs.posixlk-count": 0, "glusterfs.parent-entrylk": 0}
            reply = await top.lookup(Loc.child(d, "f"), dict(ask))
            assert {k: reply.xdata[k] for k in ask} == {
                "glusterfs.inodelk-count": 3, "glusterfs.entrylk-count": 0,
                "glusterfs.posixlk-count": 1, "glusterfs.parent-entrylk": 1}
            reply = await top.fxattrop(fd, fops.XattropType.ADD_ARRAY, {},
                                       {"glusterfs.inodelk-dom-count": "vol-replicate-0"})
            assert reply.xdata["glusterfs.inodelk-count"] == 2
            multi = {"glusterfs.multi-dom-lk-cnt-req": 1,
                     "glusterfs.inodelk-dom-prefix:vol-replicate-0": 1,
                     "glusterfs.inodelk-dom-prefix:vol-replicate-0:self-heal": 1}
            reply = await top.fstat(fd, multi)
            assert {k: reply.xdata[k] for k in multi if ":" in k} == {
                "glusterfs.inodelk-dom-prefix:vol-replicate-0": 2,
                "glusterfs.inodelk-dom-prefix:vol-replicate-0:self-heal": 1}
            # loc fops other than lookup count the parent's locks
            reply = await top.stat(floc, {"glusterfs.entrylk-count": 0})
            assert reply.xdata["glusterfs.entrylk-count"] == 1
            dfd = Fd()
            await top.opendir(d, dfd)
            listing = await top.readdirp(dfd, 4096, 0, {"glusterfs.inodelk-count": 0,
                                                        "glusterfs.parent-entrylk": 0})
            entry = next(e for e in listing.entries if e.name == "f")
            assert entry.xdata["glusterfs.inodelk-count"] == 3
            assert entry.xdata["glusterfs.parent-entrylk"] == 1
            with acting_as(B, b"b"):
                await graph.client_disconnected(B)
        reply = await top.lookup(floc, {"glusterfs.inodelk-count": 0})
        assert reply.xdata["glusterfs.inodelk-count"] == 2
        # keys that are requests never reach storage/posix as xattr names
        reply = await top.stat(Loc(gfid=fd.gfid), {"glusterfs.posixlk-count": 0})
        assert "glusterfs.posixlk-count" not in (reply.xdata or {})


# ---------------------------------------------------------------------------
# Contention upcalls


async def test_contention_upcalls_reach_the_holder(locks_graph, autojump_clock):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        upcalls: list[LockContention] = []
        graph.root.listeners.append(
            lambda event, source, data: upcalls.append(data) if event == Event.UPCALL else None)
        loc, _ = await new_file(top)
        d = await new_dir(top)
        with acting_as(A, b"a", pid=11):
            await top.inodelk("dom", loc, SETLK, fl(WR, 0, 10, pid=11))
            await top.entrylk("dom", d, "n", LOCK, EWR)
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 5, 1)))
            assert upcalls == [LockContention(A, GF_CBK_INODELK_CONTENTION, InodelkContention(
                gfid=loc.gfid, flock=Flock(WR, 0, 0, 10, 11, b""), pid=11, domain="dom"))]
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 5, 1)))
            assert len(upcalls) == 1  # notify-contention-delay: 5 s by default
            await expect_errno(errno.EAGAIN, top.entrylk("dom", d, "n", LOCK_NB, EWR))
            assert upcalls[1] == LockContention(A, GF_CBK_ENTRYLK_CONTENTION, EntrylkContention(
                gfid=d.gfid, type=EWR, pid=11, name="n", domain="dom"))
            await trio.sleep(5)
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(RD, 5, 1)))
            assert len(upcalls) == 3
    async with locks_graph(notify_contention="off") as graph:
        upcalls.clear()
        graph.root.listeners.append(lambda event, source, data: upcalls.append(data))
        loc, _ = await new_file(graph.top, "g")
        with acting_as(A, b"a"):
            await graph.top.inodelk("dom", loc, SETLK, fl(WR))
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, graph.top.inodelk("dom", loc, SETLK, fl(WR)))
        assert not [u for u in upcalls if isinstance(u, LockContention)]


# ---------------------------------------------------------------------------
# Options


async def test_revocation_secs_revokes_old_locks(locks_graph, autojump_clock):
    A, B = Client("A"), Client("B")
    async with locks_graph(revocation_secs=10) as graph:
        top = graph.top
        loc, _ = await new_file(top)
        d = await new_dir(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(WR))
            await top.entrylk("dom", d, "n", LOCK, EWR)
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(WR)))
            await trio.sleep(11)
            await top.inodelk("dom", loc, SETLK, fl(WR))
            await top.entrylk("dom", d, "n", LOCK_NB, EWR)
        with acting_as(A, b"a"):  # A's locks are gone
            await expect_errno(errno.EINVAL, top.inodelk("dom", loc, SETLK, fl(UN)))


async def test_revocation_max_blocked_with_clear_all(locks_graph):
    A = Client("A")
    async with locks_graph(revocation_secs=1000, revocation_max_blocked=2,
                           revocation_clear_all="on") as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(WR))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            for tag in "BC":
                await requests.start(tag, Client(tag), tag.encode(), top.inodelk, "dom", loc,
                                     SETLKW, fl(WR))
            with acting_as(Client("D"), b"d"):  # two waiters: everything is cleared
                await top.inodelk("dom", loc, SETLK, fl(WR))
            await trio.testing.wait_all_tasks_blocked()
        assert dict(requests.done) == {"B": errno.EAGAIN, "C": errno.EAGAIN}
        assert [lk["client"] for lk in domain_state(top, loc.gfid, "dom")["inodelk"]] == \
            ["<Client D>"]


async def test_monkey_unlocking_ignores_some_unlocks(locks_graph):
    A = Client("A")
    async with locks_graph(revocation_secs=3600, monkey_unlocking="on") as graph:
        top = graph.top
        loc, _ = await new_file(top)
        with acting_as(A, b"a"):
            for i in range(2000):  # one in a hundred is kept: never none in 2000
                await top.inodelk("dom", loc, SETLK, fl(WR, i, 1))
                await top.inodelk("dom", loc, SETLK, fl(UN, i, 1))
        stuck = len(domain_state(top, loc.gfid, "dom")["inodelk"])
        assert 0 < stuck < 100
    async with locks_graph(monkey_unlocking="on") as graph:  # only with revocation-secs
        loc, _ = await new_file(graph.top, "g")
        with acting_as(A, b"a"):
            for i in range(300):
                await graph.top.inodelk("dom", loc, SETLK, fl(WR, i, 1))
                await graph.top.inodelk("dom", loc, SETLK, fl(UN, i, 1))
        assert graph.top.dump_state() == {}


async def test_trace_logs_requests_and_verdicts(locks_graph, caplog):
    A, B = Client("A"), Client("B")
    caplog.set_level(logging.INFO, logger="test-locks")
    async with locks_graph(trace="on") as graph:
        top = graph.top
        loc, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(WR))
        with acting_as(B, b"b"):
            await expect_errno(errno.EAGAIN, top.inodelk("dom", loc, SETLK, fl(WR)))
            await top.lk(fd, SETLK, fl(RD))
    lines = [r.getMessage() for r in caplog.records if r.name == "test-locks"]
    assert any(line.startswith("[REQUEST]") and "lock=INODELK, cmd=SETLK, type=WRITE, "
               "domain: dom" in line for line in lines)
    assert any(line.startswith("[GRANTED]") and "lock=FCNTL" in line for line in lines)
    assert any(line.startswith("[TRYAGAIN]") for line in lines)


async def test_other_fops_wind_through_unchanged(locks_graph):
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        await top.writev(fd, b"hello, locks", 0, 0)
        await top.truncate(loc, 5)
        assert bytes((await top.readv(fd, 100, 0, 0)).data) == b"hello"
        await top.setxattr(loc, {"user.k": b"v"}, 0)
        assert (await top.getxattr(loc, "user.k")).dict["user.k"] == b"v"
        assert (await top.fgetxattr(fd, "user.k")).dict["user.k"] == b"v"
        await top.flush(fd)
        await top.release(fd)
        await top.unlink(loc, 0)
        await expect_errno(errno.ENOENT, top.stat(loc))


def test_options_are_the_ones_served():
    keys = {opt.key for opt in Locks.OPTIONS}
    assert keys == {"trace", "monkey-unlocking", "revocation-secs", "revocation-clear-all",
                    "revocation-max-blocked", "notify-contention", "notify-contention-delay"}


async def test_init_refuses_a_graph_without_storage_below():
    locks = Locks("l", {}, [Translator("not-storage", {}, [])])
    await expect_errno(errno.EINVAL, locks.init())


# ---------------------------------------------------------------------------
# Clearing and interrupting locks


async def test_clear_locks_through_getxattr(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        loc, fd = await new_file(top)
        d = await new_dir(top)
        with acting_as(A, b"a"):
            await top.inodelk("dom", loc, SETLK, fl(WR, 0, 10))
            await top.inodelk("dom", loc, SETLK, fl(WR, 20, 10))
            await top.entrylk("dom", d, "n", LOCK, EWR)
            await top.entrylk("dom", d, "m", LOCK, EWR)
            await top.lk(fd, SETLK, fl(WR, 0, 10))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("inode", B, b"b", top.inodelk, "dom", loc, SETLKW, fl(RD, 0, 1))
            name = "glusterfs.clrlk.tinode.kblocked"
            reply = await top.getxattr(loc, name)
            assert reply.dict[name].endswith(": inode blocked locks=1 granted locks=0")
            name = "glusterfs.clrlk.tinode.kgranted.0,0-10"
            reply = await top.getxattr(loc, name)
            assert reply.dict[name].endswith(": inode blocked locks=0 granted locks=1")
            name = "glusterfs.clrlk.tentry.kall.m"
            reply = await top.getxattr(d, name)
            assert reply.dict[name].endswith(": entry blocked locks=0 granted locks=1")
            name = "glusterfs.clrlk.tposix.kall"
            reply = await top.fgetxattr(fd, name)
            assert reply.dict[name].startswith(f"{os.uname().nodename}:")
            assert reply.dict[name].endswith(": posix blocked locks=0 granted locks=1")
            name = "glusterfs.clrlk.tposix.kall"
            assert (await top.fgetxattr(fd, name)).dict[name] == "No locks cleared."
            for bad in ("glusterfs.clrlk", "glusterfs.clrlk.tnone.kall",
                        "glusterfs.clrlk.tinode.kmost", "glusterfs.clrlk.tinode.kall.x-y"):
                await expect_errno(errno.EINVAL, top.getxattr(loc, bad))
        assert requests.done == [("inode", errno.EAGAIN)]
        remaining = domain_state(top, loc.gfid, "dom")["inodelk"]
        assert [(lk["start"], lk["len"]) for lk in remaining] == [(20, 10)]
        assert [lk["basename"] for lk in domain_state(top, d.gfid, "dom")["entrylk"]] == ["n"]


async def test_intrlk_interrupts_the_callers_own_waiter(locks_graph):
    A, B = Client("A"), Client("B")
    async with locks_graph() as graph:
        top = graph.top
        _, fd = await new_file(top)
        with acting_as(A, b"a"):
            await top.lk(fd, SETLK, fl(WR))
        async with trio.open_nursery() as nursery:
            requests = Requests(nursery)
            await requests.start("B", B, b"b", top.lk, fd, SETLKW, fl(WR))
            await requests.start("C", Client("C"), b"c", top.lk, fd, SETLKW, fl(WR))
            name = "glusterfs.intrlk.tposix.kblocked"
            with acting_as(B, b"b"):
                reply = await top.fgetxattr(fd, name)
            assert reply.dict[name].endswith("posix blocked locks=1 granted locks=0")
            with acting_as(None, b"z"):  # only a client may interrupt
                await expect_errno(errno.EINVAL, top.fgetxattr(fd, name))
            await trio.testing.wait_all_tasks_blocked()
            assert requests.done == [("B", errno.EINTR)]
            await graph.client_disconnected(Client("C"))  # another object: nothing
            nursery.cancel_scope.cancel()
        assert inode_state(top, fd.gfid)["posixlk-blocked"] == []


# ---------------------------------------------------------------------------
# Lock migration


async def test_getactivelk_and_setactivelk_move_posix_locks(locks_graph):
    A, B, rebalance = Client("A"), Client("B"), Client("rebalance")
    async with locks_graph() as graph:
        top = graph.top
        src, sfd = await new_file(top, "src")
        dst, dfd = await new_file(top, "dst")
        with acting_as(A, b"a", pid=5):
            await top.lk(sfd, SETLK, Flock(WR, 0, 0, 10, 5, b"a"), {"glusterfs.lk.lkmode": 1})
            await top.lk(sfd, SETLK, fl(RD, 100, 0, pid=5))
        active = (await top.getactivelk(src)).locks
        assert sorted(active, key=lambda a: a.flock.start) == [
            ActiveLock(Flock(WR, 0, 0, 10, 5, b"a"), "A", 1),
            ActiveLock(Flock(RD, 0, 100, 0, 5, b"a"), "A", 0)]
        with acting_as(rebalance, b"r", pid=-3):
            await top.setactivelk(dst, active)
            await expect_errno(errno.EINVAL, top.setactivelk(dst, active))
            await expect_errno(errno.EINVAL, top.setactivelk(src, []))
        assert sorted((await top.getactivelk(dst)).locks, key=lambda a: a.flock.start) == \
            sorted(active, key=lambda a: a.flock.start)
        with acting_as(B, b"b"):
            answer = (await top.lk(dfd, GETLK, fl(RD, 5, 1))).flock
            assert (answer.type, answer.start, answer.len, answer.pid, answer.owner) == \
                (WR, 0, 10, 5, b"a")
        assert (await top.getactivelk(Loc(gfid=fops.GFID.random()))).locks == []
