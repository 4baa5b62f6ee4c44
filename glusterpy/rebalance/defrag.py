"""The rebalance crawl, as GlusterFS's rebalance process runs it
(xlators/cluster/dht/src/dht-rebalance.c, gf_defrag_start_crawl and the
functions it calls), over a live cluster/distribute translator.

`Defrag(dht, cmd, commit_hash=..., node_uuid=...)` is one run; `await
defrag.run()` does, in GlusterFS's order:

1. look up the root; write the volume's new commit hash to every brick
   root (`set_volume_commit_hash`, the commithash setxattr); fix the
   root's layout first;
2. find this node's *local subvolumes* (dht_init_local_subvols_and_
   nodeuuids): the subvolumes one of whose bricks answers
   trusted.glusterfs.node-uuid with this node's uuid - the node list of a
   replica set is kept for step 4;
3. walk the namespace depth first (gf_defrag_fix_layout): for each
   directory, first every subdirectory (so that a directory's layout is
   fixed only once its subdirectories exist on the new bricks), then the
   directory's own layout (`Distribute.fix_layout`: ranges for every brick
   that is not decommissioned), then - unless the command is fix-layout -
   its files (gf_defrag_process_dir): the entries of the directory on each
   *local* subvolume, read with readdirp round robin, linkto files and
   directories left out, queued for the migrators;
4. migrators (gf_defrag_migrate_single_file), as many as
   `cluster.rebal-throttle` allows (lazy 1, normal 2, aggressive
   max(cores - 4, 4), or a number up to the node's cores; changed live): a file is this node's when its data is
   on a local subvolume and, for a subvolume of several nodes (a replica
   set), when the hash of its gfid picks this node's uuid among the set's
   (gf_defrag_should_i_migrate) - so no two nodes migrate the same file; it
   is moved when its hashed subvolume (by the layout just fixed) is not
   the local subvolume that listed it (`Distribute.migrate_file`, which
   follows GlusterFS's migration phases and lets clients go on reading and
   writing; it looks the name up on both bricks, beside the free-space
   check, where GlusterFS looks it up through distribute first);
5. once a directory's files are settled, its layout entries on the local
   subvolumes get the new commit hash (gf_defrag_settle_hash, skipped for
   fix-layout), so that lookup-optimize trusts the layout again once every
   node has settled its bricks.

Free space (__dht_check_free_space): without force, a file is skipped (and
counted as skipped) when moving it would leave its new brick with a smaller
share of free space than its old one - compared as GlusterFS compares them
after fallocating the destination; with or without force, when the new
brick would fall below `min-free-disk`.  Files with several hard links and
files with POSIX locks (without lock-migration) are skipped as well.  For
remove-brick (decommissioned subvolumes), a skipped file whose data is on
a brick being removed counts as a failure, so that the commit is refused.

Counters and states are GlusterFS's (gf_defrag_status_get): files moved,
bytes moved, "lookups" (files scanned, linkto files included), failures,
skipped, run time, time left; statuses not started / in progress /
stopped / completed / failed and their fix-layout forms.

Departures, each on purpose:

* a directory's commit hash is settled only after every file queued from
  it has been handled, and not at all when one of them was skipped or
  failed (GlusterFS settles right after queueing: a lookup-optimized
  client could miss a file not yet moved, or one that was skipped);
* the estimate divides the bytes still to scan by the rate so far, where
  the total is counted by walking the local bricks alongside the crawl
  (GlusterFS takes the used blocks of the bricks' file systems, which
  counts other data on a shared disk), and is given after 10 s instead of
  10 min;
* a file a client wrote to while it was being copied (EBUSY without
  force-migration) is tried again after the crawl, twice, before it counts
  as a failure, so that a remove-brick finishes under a steady load;
* files with hard links are not migrated, also for remove-brick
  (gf_defrag_handle_hardlink is not here): on a brick being removed they
  count as failures, and commit refuses until they are moved by hand;
* files skipped for min-free-disk are not placed on another brick with
  room (GlusterFS looks for one and leaves a linkto file); they are
  skipped;
* no entry or inode locks are taken (see xlators/cluster/distribute/__init__.py).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import os
import time
from collections import deque

import trio

from glusterpy import fops
from glusterpy.fops import Caller, Fd, FopError, Loc, UInt
from glusterpy.keys import NODE_UUID_KEY
from glusterpy.xlator import both

from xlators.cluster.distribute import layout as dl
from xlators.cluster.distribute.common import rebalance_thread_count
from ..fops import ClientPid

log = logging.getLogger("glusterpy.rebalance")


class Cmd(enum.IntEnum):
    """gf_cli_defrag_type (rpc/xdr/src/cli1-xdr.x): what a run does."""

    START = 1
    STOP = 2
    STATUS = 3
    START_LAYOUT_FIX = 4
    START_FORCE = 5        # `rebalance start force`, and remove-brick's migration


#: the CLI's and the status file's names of the commands a process runs
CMD_NAMES = {"start": Cmd.START, "fix-layout": Cmd.START_LAYOUT_FIX,
             "start-force": Cmd.START_FORCE}


class Status(enum.IntEnum):
    """gf_defrag_status_t."""

    NOT_STARTED = 0
    STARTED = 1
    STOPPED = 2
    COMPLETE = 3
    FAILED = 4
    LAYOUT_FIX_STARTED = 5
    LAYOUT_FIX_STOPPED = 6
    LAYOUT_FIX_COMPLETE = 7
    LAYOUT_FIX_FAILED = 8


#: cli_vol_task_status_str
STATUS_TEXT = {Status.NOT_STARTED: "not started", Status.STARTED: "in progress",
               Status.STOPPED: "stopped", Status.COMPLETE: "completed",
               Status.FAILED: "failed", Status.LAYOUT_FIX_STARTED: "fix-layout in progress",
               Status.LAYOUT_FIX_STOPPED: "fix-layout stopped",
               Status.LAYOUT_FIX_COMPLETE: "fix-layout completed",
               Status.LAYOUT_FIX_FAILED: "fix-layout failed"}
TERMINAL = frozenset({Status.STOPPED, Status.COMPLETE, Status.FAILED,
                      Status.LAYOUT_FIX_STOPPED, Status.LAYOUT_FIX_COMPLETE,
                      Status.LAYOUT_FIX_FAILED})
#: glusterd shows a fix-layout run's statuses in their fix-layout form
_AS_FIX_LAYOUT = {Status.STARTED: Status.LAYOUT_FIX_STARTED,
                  Status.STOPPED: Status.LAYOUT_FIX_STOPPED,
                  Status.COMPLETE: Status.LAYOUT_FIX_COMPLETE,
                  Status.FAILED: Status.LAYOUT_FIX_FAILED}

#: entries the crawler may queue ahead of the migrators (MAX_MIGRATE_QUEUE_COUNT)
MAX_MIGRATE_QUEUE_COUNT = 500
READDIR_SIZE = 131072
DT_UNKNOWN, DT_DIR = 0, 4
GF_DISK_SECTOR_SIZE = 512
#: seconds of running before an estimate is given
ESTIMATE_START_INTERVAL = 10.0
#: how often a file a client wrote to during its copy is tried again
BUSY_RETRIES = 2
BUSY_RETRY_PAUSE = 1.0
_GONE = (errno.ENOENT, errno.ESTALE)


@dataclasses.dataclass
class Counters:
    """gf_defrag_info_t's counters, and the totals the estimate needs."""

    files: int = 0             # migrated
    size: int = 0              # bytes migrated
    lookups: int = 0           # files scanned (num_files_lookedup)
    failures: int = 0
    skipped: int = 0
    size_processed: int = 0    # bytes of the files scanned
    dirs: int = 0              # directories whose layout was fixed
    total_files: int | None = None
    total_size: int | None = None
    total_dirs: int | None = None


@dataclasses.dataclass(eq=False)
class _DirState:
    """A directory whose files are queued: its commit hash is settled when
    the last one is handled, unless one was skipped or failed."""

    loc: Loc
    pending: int = 0
    queued_all: bool = False
    unsettled: bool = False
    settled: bool = False


@dataclasses.dataclass(eq=False)
class _Item:
    """One file for the migrators (dht_container)."""

    state: _DirState
    name: str
    gfid: fops.GFID
    size: int
    local_index: int       # position in Defrag.local
    iatt: fops.Iatt | None = None   # as the brick's listing gave it
    attempt: int = 0


class Defrag:
    """One rebalance run over the distribute translator `dht`; see the
    module docstring."""

    def __init__(self, dht, cmd: Cmd, *, commit_hash: int, node_uuid: str | None = None,
                 carried: dict | None = None, logger: logging.Logger | None = None):
        self.dht = dht
        self.cmd = Cmd(cmd)
        self.commit_hash = commit_hash & 0xFFFFFFFF
        self.node_uuid = node_uuid
        self.log = logger or dht.log
        self.counters = Counters()
        if carried:   # a restarted process keeps what its predecessor moved
            self.counters.files = int(carried.get("files", 0))
            self.counters.size = int(carried.get("size", 0))
        self.status = Status.NOT_STARTED
        self.error: str | None = None
        #: indexes of this node's subvolumes, and each one's node uuids
        self.local: list[int] = []
        self.node_uuids: dict[int, list[str | None]] = {}
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._send: trio.MemorySendChannel | None = None
        self._busy: list[_Item] = []
        self._stop_requested = False

    # -- control ------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.status == Status.STARTED

    def stop(self) -> None:
        """gf_defrag_stop: queue nothing more; files being moved finish."""
        self._stop_requested = True
        if self.status in (Status.NOT_STARTED, Status.STARTED):
            self.status = Status.STOPPED
            self.log.info("Received stop command on rebalance")

    def _fail(self, why: str) -> None:
        if self.status in (Status.NOT_STARTED, Status.STARTED):
            self.status = Status.FAILED
            self.error = why
            self.log.error("rebalance failed: %s", why)

    @property
    def decommissioning(self) -> bool:
        return bool(self.dht.decommissioned)

    # -- the run ------------------------------------------------------------

    async def run(self) -> Status:
        """gf_defrag_start_crawl; returns the final status."""
        token = fops.caller.set(Caller(uid=0, gid=0, pid=ClientPid.DEFRAG,
                                       lk_owner=os.urandom(8)))
        self._started_at = time.monotonic()
        if self._stop_requested:
            self._finished_at = self._started_at
            return self.status
        self.status = Status.STARTED
        try:
            await self._crawl_volume()
        except FopError as e:
            self._fail(str(e))
        finally:
            fops.caller.reset(token)
            self._finished_at = time.monotonic()
        if self.status == Status.STARTED:
            self.status = Status.COMPLETE
        c = self.counters
        self.log.info("Rebalance is %s. Time taken is %d secs Files migrated: %d, size: %d, "
                      "lookups: %d, failures: %d, skipped: %d", STATUS_TEXT[self.status],
                      self.elapsed(), c.files, c.size, c.lookups, c.failures, c.skipped)
        return self.status

    async def _crawl_volume(self) -> None:
        dht = self.dht
        root = Loc.root()
        try:
            await dht.lookup(root, None)
        except FopError as e:
            self._fail(f"look up on / failed: {e}")
            return
        self.log.info("using commit hash %d", self.commit_hash)
        try:
            await dht.set_volume_commit_hash(self.commit_hash)
        except FopError as e:
            self._fail(f"failed to set the commit hash on /: {e}")
            return
        try:
            await dht.fix_layout(root)      # fix-layout on '/' first
        except FopError as e:
            self._fail(f"fix layout on / failed: {e}")
            return
        self.local, self.node_uuids = await local_subvolumes(dht, self.node_uuid)
        for i in self.local:
            self.log.info("local subvol: %s (node uuids %s)", dht.names[i],
                          " ".join(u or "-" for u in self.node_uuids[i]))
        # enough migrators for any throttle the option allows, changed live
        workers = max(rebalance_thread_count("aggressive"), os.cpu_count() or 1)
        async with trio.open_nursery() as outer:
            counting = trio.CancelScope()
            outer.start_soon(self._count, counting)
            async with trio.open_nursery() as nursery:
                send, receive = trio.open_memory_channel(MAX_MIGRATE_QUEUE_COUNT)
                self._send = send
                if self.cmd != Cmd.START_LAYOUT_FIX:
                    for _ in range(workers):
                        nursery.start_soon(self._migrator, receive.clone())
                receive.close()
                async with send:
                    await self._crawl(root)
            await self._retry_busy()
            counting.cancel()
        if self.running:
            self.log.info("crawling file-system completed")

    # -- gf_defrag_fix_layout -------------------------------------------------

    async def _crawl(self, loc: Loc) -> None:
        if not self.running:
            return
        dht = self.dht
        try:
            reply = await dht.lookup(loc, None)
        except FopError as e:
            self._dir_error(loc, "lookup", e)
            return
        if not reply.iatt.is_dir:      # a brick's DT_UNKNOWN entry that is not one
            return
        loc = dataclasses.replace(loc, gfid=reply.iatt.gfid)
        try:
            subdirs = await self._subdirs(loc)
        except FopError as e:
            self._dir_error(loc, "readdir", e)
            return
        for name in subdirs:
            if not self.running:
                return
            await self._crawl(Loc.child(loc, name))
        if not self.running:
            return
        # the layout is fixed once the subdirectories exist on new bricks
        try:
            await dht.fix_layout(loc)
        except FopError as e:
            self._dir_error(loc, "fix layout", e)
            return
        self.counters.dirs += 1
        if self.cmd == Cmd.START_LAYOUT_FIX:
            return
        state = _DirState(loc)
        try:
            await self._process_dir(loc, state)
        except FopError as e:
            state.unsettled = True
            if e.errno not in _GONE:
                self.counters.failures += 1
                self.log.error("gf_defrag_process_dir failed for directory %s: %s", loc, e)
                if self.decommissioning:
                    self._fail(f"{loc}: {e}")
        state.queued_all = True
        await self._maybe_settle(state)

    def _dir_error(self, loc: Loc, what: str, e: FopError) -> None:
        if e.errno in _GONE:
            self.log.info("Dir %s renamed or removed (%s: %s). Skipping", loc, what, e)
            if self.decommissioning:
                self.counters.failures += 1
            return
        self.counters.failures += 1
        self.log.error("%s failed for %s: %s", what, loc, e)
        if e.errno == errno.ENOTCONN or self.decommissioning:
            self._fail(f"{what} of {loc} failed: {e}")

    async def _subdirs(self, loc: Loc) -> list[str]:
        """The names of a directory's subdirectories: the union of what
        every brick lists (a name listed as DT_UNKNOWN too; the crawl's
        lookup tells).  GlusterFS reads them through distribute with
        readdir-optimize, from the subvolume up the longest - a brick just
        added, when it connected first, has none of them yet."""
        names: set[str] = set()
        for child in self.dht.children:
            fd = Fd(gfid=loc.gfid, is_dir=True)
            try:
                await child.opendir(Loc(path=loc.path, gfid=loc.gfid), fd, None)
            except FopError as e:
                if e.errno in _GONE:
                    continue
                raise
            try:
                offset = 0
                while True:
                    entries = (await child.readdir(fd, READDIR_SIZE, offset, None)).entries
                    if not entries:
                        break
                    for e in entries:
                        offset = e.off
                        if e.name not in (".", "..") and e.type in (DT_DIR, DT_UNKNOWN):
                            names.add(e.name)
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await child.releasedir(fd, None)
                    except FopError:
                        pass
        return sorted(names)

    # -- gf_defrag_process_dir ------------------------------------------------

    async def _process_dir(self, loc: Loc, state: _DirState) -> None:
        """Queue the directory's files found on the local subvolumes, one
        entry from each in turn."""
        dht = self.dht
        self.log.info("migrate data called on %s", loc)
        fds: dict[int, Fd] = {}
        try:
            for pos, i in enumerate(self.local):
                fd = Fd(gfid=loc.gfid, is_dir=True)
                try:
                    await dht.children[i].opendir(Loc(path=loc.path, gfid=loc.gfid), fd, None)
                except FopError as e:
                    self.log.warning("dir %s: cannot open it on %s: %s", loc, dht.names[i], e)
                    if self.decommissioning or e.errno == errno.ENOTCONN:
                        raise
                    continue
                fds[pos] = fd
            buffers: dict[int, deque] = {pos: deque() for pos in fds}
            offsets = {pos: 0 for pos in fds}
            req = {dht.linkto_key: UInt(256)}
            while buffers and self.running:
                for pos in list(buffers):
                    if not self.running:
                        return
                    if not buffers[pos]:
                        i = self.local[pos]
                        entries = (await dht.children[i].readdirp(
                            fds[pos], READDIR_SIZE, offsets[pos], req)).entries
                        if not entries:
                            del buffers[pos]
                            continue
                        buffers[pos].extend(entries)
                    entry = buffers[pos].popleft()
                    offsets[pos] = entry.off
                    item = self._item(state, pos, entry)
                    if item is not None:
                        state.pending += 1
                        await self._send.send(item)
        finally:
            with trio.CancelScope(shield=True):
                for pos, fd in fds.items():
                    try:
                        await dht.children[self.local[pos]].releasedir(fd, None)
                    except FopError:
                        pass

    def _item(self, state: _DirState, pos: int, entry) -> _Item | None:
        """gf_defrag_get_entry's filter: no dots, no directories, no linkto
        files (they are counted as looked up, as GlusterFS counts them)."""
        if entry.name in (".", ".."):
            return None
        ia = entry.iatt
        if entry.type == DT_DIR or (ia is not None and ia.is_dir):
            return None
        self.counters.lookups += 1
        if ia is None:
            return None
        if dl.is_linkto_mode(ia.mode) and entry.xdata and self.dht.linkto_key in entry.xdata:
            return None
        return _Item(state, entry.name, ia.gfid, ia.size, pos, ia)

    # -- gf_defrag_migrate_single_file -----------------------------------------

    async def _migrator(self, receive: trio.MemoryReceiveChannel) -> None:
        async with receive:
            async for item in receive:
                try:
                    if self.running:
                        self._throttle()
                        async with self._limiter:
                            if self.running:
                                await self._migrate(item)
                finally:
                    item.state.pending -= 1
                    await self._maybe_settle(item.state)

    def _throttle(self) -> None:
        """dht_configure_throttle, live: a number above this node's cores
        (validated on another node) keeps the count as it was, as
        GlusterFS's rebalance process logs and keeps it."""
        try:
            self._limiter.total_tokens = rebalance_thread_count(
                getattr(self.dht.opts, "rebal_throttle", "normal"))
        except ValueError as e:
            self.log.error("%s", e)

    def should_i_migrate(self, pos: int, gfid) -> bool:
        """gf_defrag_should_i_migrate: a subvolume of one node is that
        node's; a replica set's files are shared out by the hash of their
        gfid among its nodes (the first node up stands in for one down)."""
        uuids = self.node_uuids.get(self.local[pos], [self.node_uuid])
        if len(uuids) == 1:
            return True
        index = self.dht.hasher.hash(str(gfid)) % len(uuids)
        if uuids[index] is None:
            index = next((k for k, u in enumerate(uuids) if u is not None), None)
            if index is None:
                return False
        return uuids[index] == self.node_uuid

    async def _migrate(self, item: _Item) -> None:
        dht = self.dht
        c = self.counters
        loc = Loc.child(item.state.loc, item.name)
        try:
            if not self.should_i_migrate(item.local_index, item.gfid):
                return
            # where the file belongs, by the layout just fixed, and where its
            # data is: the brick that listed it (GlusterFS looks the name up
            # through distribute instead - a miss on the hashed brick, a
            # lookup everywhere and a linkto file made there; migrate_file's
            # lookup on the data's brick checks the same file is still there)
            try:
                hashed = await dht.hashed_subvolume(loc)
            except FopError as e:
                if e.errno not in _GONE:
                    self.log.error("Migrate file failed: %s lookup failed: %s", loc, e)
                if self.decommissioning:
                    c.failures += 1
                return
            cached = self.local[item.local_index]
            ia = item.iatt
            if hashed is None or hashed == cached or ia is None:
                return
            if ia.nlink > 1:
                self.log.warning("Migration skipped for: %s: file has hardlinks", loc)
                self._skip(item, cached)
                await self._leave_linkto(loc)
                return
            try:
                # the free-space rule goes out with the lookups of the name
                moved = await dht.migrate_file(
                    dataclasses.replace(loc, gfid=item.gfid), placement=(hashed, cached, ia),
                    admit=lambda: self._space_allows(loc, cached, hashed, ia.size))
            except FopError as e:
                await self._migrate_error(item, loc, cached, e)
                return
            if moved:
                c.files += 1
                c.size += ia.size
            else:          # no room, locks without lock-migration, or hard links
                self._skip(item, cached)
                await self._leave_linkto(loc)
        finally:
            if item.attempt == 0:
                c.size_processed += item.size

    async def _leave_linkto(self, loc: Loc) -> None:
        """A file that stays off its hashed subvolume gets its linkto file
        there, as GlusterFS's crawl leaves one: its lookup of each entry
        through distribute makes it (here only the files that stay are
        looked up so)."""
        try:
            await self.dht.file_placement(loc)
        except FopError as e:
            self.log.warning("%s: no linkto file on its hashed subvolume: %s", loc, e)

    async def _migrate_error(self, item: _Item, loc: Loc, cached: int, e: FopError) -> None:
        if e.errno == errno.ENOTCONN:
            self.counters.failures += 1
            self._fail(f"migrate-data of {loc} failed: {e}")
            return
        if e.errno in _GONE:
            if self.decommissioning:
                self.counters.failures += 1
            return
        if e.errno == errno.ENOSPC:
            self._skip(item, cached)
            return
        item.state.unsettled = True
        if e.errno == errno.EBUSY and item.attempt < BUSY_RETRIES:
            self.log.info("%s: a client wrote to it while it was migrated; it is tried "
                          "again after the crawl", loc)
            self._busy.append(item)
            return
        self.counters.failures += 1
        self.log.error("migrate-data failed for %s: %s", loc, e)

    def _skip(self, item: _Item, cached: int) -> None:
        item.state.unsettled = True
        if cached in self.dht.decommissioned:
            self.counters.failures += 1     # left on a brick being removed
        else:
            self.counters.skipped += 1

    async def _space_allows(self, loc: Loc, src: int, dst: int, size: int) -> bool:
        """__dht_check_free_space, as GlusterFS evaluates it after
        fallocating the destination (use_fallocate): the new brick must not
        end up with a smaller share of free space than the old one (not
        with force), nor below min-free-disk."""
        dht = self.dht
        root = Loc.root()
        s_reply, d_reply = await both(lambda: dht.children[src].statfs(root, None),
                                      lambda: dht.children[dst].statfs(root, None))
        s, d = s_reply.statvfs, d_reply.statvfs
        unit = GF_DISK_SECTOR_SIZE
        file_blocks = (size + unit - 1) // unit
        # two bricks on one file system: after fallocating the destination
        # GlusterFS sees the same free space on both, so the share test passes
        same_fs = s.fsid == d.fsid and s.blocks == d.blocks and s.frsize == d.frsize
        dst_avail = max(d.bavail * (d.frsize // unit or 1) - file_blocks, 0)
        src_avail = s.bavail * (s.frsize // unit or 1)
        dst_total = d.blocks * (d.frsize // unit or 1) or 1
        src_total = s.blocks * (s.frsize // unit or 1) or 1
        dst_post = dst_avail * 100 / dst_total
        src_post = src_avail * 100 / src_total
        if self.cmd == Cmd.START and not self.decommissioning and not same_fs and \
                dst_post < src_post:
            self.log.warning("data movement of file {blocks:%d name:(%s)} would result in "
                             "dst node (%s:%d) having lower disk space than the source node "
                             "(%s:%d).Skipping file.", file_blocks, loc, dht.names[dst],
                             dst_avail, dht.names[src], src_avail)
            return False
        limit = dht.opts.min_free_disk
        if limit.percent is not None:
            below = dst_post < limit.percent
        else:
            below = dst_avail * unit < limit.size
        if below:
            self.log.warning("Write will cross min-free-disk for file - %s on subvol - %s; "
                             "skipping it", loc, dht.names[dst])
            return False
        return True

    async def _retry_busy(self) -> None:
        """The files clients wrote to during their copy, once more."""
        while self._busy and self.running:
            items, self._busy = self._busy, []
            await trio.sleep(BUSY_RETRY_PAUSE)
            for item in items:
                if not self.running:
                    return
                item.attempt += 1
                await self._migrate(item)

    # -- gf_defrag_settle_hash -------------------------------------------------

    async def _maybe_settle(self, state: _DirState) -> None:
        if state.settled or not state.queued_all or state.pending:
            return
        state.settled = True
        if self.cmd == Cmd.START_LAYOUT_FIX or state.unsettled or not self.running or \
                not self.local or not self.dht.opts.lookup_optimize:
            return
        try:
            await self.dht.fix_layout(state.loc, new_commit_hash=self.commit_hash,
                                      subvolumes=self.local)
        except FopError as e:
            if e.errno in _GONE:
                return
            self.counters.failures += 1
            self.log.error("Settle hash failed for %s: %s", state.loc, e)
            if self.decommissioning:
                self._fail(f"settling {state.loc} failed: {e}")

    # -- the estimate's totals (dht_file_counter_thread) ----------------------

    async def _count(self, scope: trio.CancelScope) -> None:
        """Walk the local subvolumes' directories (the first one's for the
        directory count: every directory is on every brick) and total the
        data files - the estimate's denominator."""
        with scope:
            dht = self.dht
            subvols = self.local or [0]
            files = size = dirs = 0
            for n, i in enumerate(subvols):
                child = dht.children[i]
                stack = [Loc.root()]
                while stack:
                    loc = stack.pop()
                    fd = Fd(gfid=loc.gfid, is_dir=True)
                    try:
                        await child.opendir(loc, fd, None)
                    except FopError:
                        continue
                    try:
                        offset = 0
                        while True:
                            try:
                                entries = (await child.readdirp(
                                    fd, READDIR_SIZE, offset,
                                    {dht.linkto_key: UInt(256)})).entries
                            except FopError:
                                break
                            if not entries:
                                break
                            for e in entries:
                                offset = e.off
                                ia = e.iatt
                                if e.name in (".", "..") or ia is None:
                                    continue
                                if ia.is_dir:
                                    stack.append(Loc.child(loc, e.name, ia.gfid))
                                    if n == 0:
                                        dirs += 1
                                elif not (dl.is_linkto_mode(ia.mode) and e.xdata and
                                          dht.linkto_key in e.xdata):
                                    files += 1
                                    size += ia.size
                    finally:
                        with trio.CancelScope(shield=True):
                            try:
                                await child.releasedir(fd, None)
                            except FopError:
                                pass
            c = self.counters
            c.total_files, c.total_size, c.total_dirs = files, size, dirs + 1

    # -- status -------------------------------------------------------------

    def elapsed(self) -> float:
        if self._started_at is None:
            return 0.0
        return (self._finished_at or time.monotonic()) - self._started_at

    def progress(self) -> float | None:
        """Share of the work done (0..1), None before the totals are known."""
        c = self.counters
        if self.status in (Status.COMPLETE,):
            return 1.0
        if self.cmd == Cmd.START_LAYOUT_FIX:
            done, total = c.dirs, c.total_dirs
        elif c.total_size:
            done, total = c.size_processed, c.total_size
        else:
            done, total = c.lookups, c.total_files
        if not total:
            return None if total is None else (1.0 if self.status in TERMINAL else 0.0)
        return min(done / total, 0.999)

    def time_left(self) -> float | None:
        """gf_defrag_get_estimates_based_on_size (see the docstring)."""
        if not self.running:
            return None
        elapsed = self.elapsed()
        share = self.progress()
        if share is None or elapsed < ESTIMATE_START_INTERVAL or share <= 0:
            return None
        return max(elapsed / share - elapsed, 0.0)

    def reported_status(self) -> Status:
        """The status as glusterd reports it: fix-layout runs in their form."""
        if self.cmd == Cmd.START_LAYOUT_FIX:
            return _AS_FIX_LAYOUT.get(self.status, self.status)
        return self.status

    def snapshot(self) -> dict:
        """The status document (gf_defrag_status_get's dict, and more)."""
        c = self.counters
        status = self.reported_status()
        left = self.time_left()
        return {"status": STATUS_TEXT[status], "status-code": int(status),
                "files": c.files, "size": c.size, "lookups": c.lookups,
                "failures": c.failures, "skipped": c.skipped,
                "size-processed": c.size_processed, "dirs": c.dirs,
                "total-files": c.total_files, "total-size": c.total_size,
                "total-dirs": c.total_dirs, "run-time": round(self.elapsed(), 3),
                "time-left": None if left is None else round(left, 1),
                "progress": self.progress(), "error": self.error,
                "local-subvolumes": [self.dht.names[i] for i in self.local]}


# --------------------------------------------------------------------------
# local subvolumes (dht_find_local_subvol_cbk)


async def local_subvolumes(dht, node_uuid: str | None) -> tuple[list[int], dict]:
    """The indexes of the subvolumes with a brick of node `node_uuid`, and
    each one's node uuids (None for a brick that did not answer), as the
    getxattr of glusterfs.find-local-subvol gathers them.  Without a node
    uuid every subvolume is local (one process rebalances the volume)."""
    local: list[int] = []
    uuids: dict[int, list[str | None]] = {}
    for i, child in enumerate(dht.children):
        found = await _leaf_node_uuids(child)
        if node_uuid is None:
            local.append(i)
            uuids[i] = [None]
        elif node_uuid in found:
            local.append(i)
            uuids[i] = found
    if node_uuid is not None and not local:
        log.info("%s: no subvolume has a brick of node %s", dht.name, node_uuid)
    return local, uuids


async def _leaf_node_uuids(xl) -> list[str | None]:
    """trusted.glusterfs.node-uuid of every brick below `xl` (GlusterFS's
    list-node-uuids of a replica set); None where a brick does not answer."""
    if xl.children and xl.type_name != "protocol/client":
        out: list[str | None] = []
        for child in xl.children:
            out.extend(await _leaf_node_uuids(child))
        return out
    try:
        reply = await xl.getxattr(Loc.root(), NODE_UUID_KEY, None)
    except FopError:
        return [None]
    value = reply.dict.get(NODE_UUID_KEY)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).rstrip(b"\0").decode(errors="replace")
    return [str(value).strip() if value else None]


__all__ = ["Defrag", "Cmd", "Status", "STATUS_TEXT", "TERMINAL", "CMD_NAMES",
           "local_subvolumes"]
