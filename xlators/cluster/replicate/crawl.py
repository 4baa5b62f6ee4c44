"""The crawls (afr-self-heald.c's index and full sweeps, glfsheal's listing):
what a brick's heal index lists, healed or reported entry by entry.

**Parallel heals** (syncop_mt_dir_scan, ``shd-max-threads`` and
``shd-wait-qlength``): a sweep's crawling task hands the entries it finds
to a `HealQueue`, whose jobs - at most ``shd-max-threads`` trio tasks at
once - heal them; when ``shd-wait-qlength`` entries wait for a job, the
crawl waits.  Both options are read as the sweep goes, so ``volume set``
acts on a sweep in progress.  The ordering is GlusterFS's: only
non-directories are queued; a **directory** is healed by the crawling task
itself, one at a time, before the crawl goes on.  So in a full sweep a
directory's entry heal (which creates its missing names on the sinks) is
over before its contents are listed, and the names and inodes below it are
healed only after.  An index sweep heals the directories its index lists
before the files it lists (GlusterFS takes them in the order the index
directory lists them): a file written while a brick was away is most often
listed beside the directory it was created in, and healed before that
directory's entry heal it is a wasted heal - the file is not on the sink
yet - and waits for the next sweep.  A file whose directory is not listed
in this index (another brick's index has it) may still come too early;
it stays in the index and the next sweep - the daemon sweeps again as long
as a sweep healed something - heals it, as in GlusterFS.  Heals of one gfid
never overlap (`GfidGuard`: a hard link met twice, or the index healers of
two bricks listing the same inode); the second waits for the first.

**A resumable full sweep** (`SweepPosition`): GlusterFS starts a full sweep
over from the root after a restart (gluster/glusterfs#197); glusterpy's
self-heal daemon saves, as it goes, the directories still to be listed or
whose entries are still being healed, and a restarted sweep continues from
there - a directory whose entries were all healed is not listed again.  An
index sweep needs no such thing: the index is what is left to heal (an
entry is removed when its inode is healed), so a restarted sweep lists
only what the interrupted one had not finished.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc, XattropType
from glusterpy.keys import GET_GFID_TYPE, GFID_TO_PATH_KEY

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.heal_common import (INDEX_GFID_KEYS, CrawlStats, Heal, Outcome,
                                                   dir_entries, list_dir)
from xlators.cluster.replicate.heal_inode import heal_gfid, heal_info
from xlators.cluster.replicate.heal_name import heal_name
from xlators.cluster.replicate.state import is_ok

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
#: the d_type of a directory, as features/index reports it for get-gfid-type
DT_DIR = stat.S_IFDIR >> 12


# ==========================================================================
# Parallel heals (syncop_mt_dir_scan)


class GfidGuard:
    """Which gfids are being healed now; a heal of one of them waits for
    the heal in progress.  Transient (at most one entry per running heal),
    so it is not per-inode state for the inode table.

    It also remembers when the last `RECENT` heals started, so that an
    index sweep can pass over an entry another healer of the daemon began
    to heal after the sweep listed it (`run(..., since=)`): that heal
    inspected the inode, under its locks, after everything the listing
    could show.  The index healers of a replica's bricks list the same
    entries in the same order (features/index sorts them), so without this
    the second walked behind the first, waiting for each heal and then
    inspecting the inode again; with it they heal different files."""

    RECENT = 4096

    def __init__(self) -> None:
        self._busy: dict[GFID, trio.Event] = {}
        self._started: collections.OrderedDict[GFID, float] = collections.OrderedDict()
        #: instrumentation (statedump, tests): heals in progress, the most
        #: ever in progress at once, entries passed over (`since`)
        self.running = 0
        self.peak = 0
        self.passed_over = 0

    def _healed_since(self, gfid: GFID, since: float | None) -> bool:
        return since is not None and self._started.get(gfid, -1.0) >= since

    async def run(self, gfid: GFID, job: Job, since: float | None = None) -> bool:
        """Run `job` once no other heal of `gfid` is in progress; with
        `since` (when the caller listed the entry, trio's clock), not at
        all when a heal of it started at or after that (False)."""
        while (busy := self._busy.get(gfid)) is not None:
            if self._healed_since(gfid, since):
                break
            await busy.wait()
        if self._healed_since(gfid, since):
            self.passed_over += 1
            return False
        done = self._busy[gfid] = trio.Event()
        self._started[gfid] = trio.current_time()
        self._started.move_to_end(gfid)
        while len(self._started) > self.RECENT:
            self._started.popitem(last=False)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await job()
        finally:
            self.running -= 1
            del self._busy[gfid]
            done.set()
        return True


class HealQueue:
    """The entries one sweep found and the jobs healing them: at most
    ``shd-max-threads`` jobs, at most ``shd-wait-qlength`` entries waiting
    (see the module docstring).  A job heals one entry and then takes the
    next waiting one, as syncop_mt_dir_scan's jobs do.  `put` needs the
    nursery the jobs run in; the sweep leaves that nursery when every job
    is over."""

    def __init__(self, afr: "Replicate", nursery: trio.Nursery, guard: GfidGuard):
        self.afr = afr
        self.guard = guard
        self._nursery = nursery
        self._waiting: collections.deque[tuple[GFID, Job, float | None]] = \
            collections.deque()
        self._changed = trio.Event()
        self.jobs = 0
        #: instrumentation for `statedump` and tests
        self.peak_jobs = 0
        self.peak_waiting = 0
        self.crawl_waits = 0

    @property
    def max_jobs(self) -> int:
        return max(1, int(self.afr.opts.shd_max_threads))

    @property
    def max_waiting(self) -> int:
        return max(1, int(self.afr.opts.shd_wait_qlength))

    async def put(self, gfid: GFID, job: Job, since: float | None = None) -> None:
        """Queue one heal (`since`: as in `GfidGuard.run`); wait while the
        queue is full."""
        while len(self._waiting) >= self.max_waiting:
            self.crawl_waits += 1
            await self._wait_change()
        self._waiting.append((gfid, job, since))
        self._start_jobs()
        self.peak_waiting = max(self.peak_waiting, len(self._waiting))

    def _start_jobs(self) -> None:
        """A job for each free place (shd-max-threads may have grown)."""
        while self._waiting and self.jobs < self.max_jobs:
            self.jobs += 1
            self.peak_jobs = max(self.peak_jobs, self.jobs)
            self._nursery.start_soon(self._job, self._waiting.popleft())

    async def inline(self, gfid: GFID, job: Job) -> None:
        """A heal the crawling task does itself (a directory)."""
        await self.guard.run(gfid, job)

    async def _job(self, item: tuple[GFID, Job, float | None] | None) -> None:
        try:
            while item is not None:
                await self.guard.run(*item)
                # a smaller shd-max-threads ends the jobs beyond it
                item = self._waiting.popleft() if self._waiting and \
                    self.jobs <= self.max_jobs else None
                self._start_jobs()
                self._notify()
        finally:
            self.jobs -= 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()


@contextlib.asynccontextmanager
async def heal_jobs(afr: "Replicate", guard: GfidGuard):
    """A `HealQueue` whose jobs are all over when the block ends.  A
    FopError of the crawl itself (a brick gone) comes out as itself, not
    in a trio exception group, so the sweep's callers see what they saw
    before the heals were parallel."""
    try:
        async with trio.open_nursery() as nursery:
            yield HealQueue(afr, nursery, guard)
    except BaseExceptionGroup as group:
        errors, others = group.split(FopError)
        if others is None:
            raise _first(errors) from None
        cancelled, rest = others.split(trio.Cancelled)
        if rest is None and cancelled is not None:
            # the sweep is being cancelled (the graph stops): a brick's
            # error on the way does not matter any more
            raise _first(cancelled) from None
        raise


def _first(error: BaseException | None) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert error is not None
    return error


# ==========================================================================
# Crawling (afr-self-heald.c)


async def pending_entries(afr: "Replicate", child: int, kind: str = "xattrop") -> list[GFID]:
    """The gfids child `child`'s index lists (``kind`` xattrop, dirty or
    entry-changes), read through the fops as the self-heal daemon does:
    getxattr of the index gfid at the root, opendir and readdir of it."""
    h = Heal(afr)
    key = INDEX_GFID_KEYS[kind]
    sub = afr.children[child]
    got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key, None))
    vgfid = GFID(bytes(got.dict[key]))
    out = []
    for name in await list_dir(h, child, vgfid, {GET_GFID_TYPE: 1}):
        try:
            out.append(GFID(name))
        except ValueError:
            continue
    return out


async def _typed_entries(afr: "Replicate", child: int, kind: str) -> list[tuple[GFID, bool]]:
    """`pending_entries` with each inode's type as features/index reports
    it for ``get-gfid-type``: (gfid, is a directory)."""
    h = Heal(afr)
    key = INDEX_GFID_KEYS[kind]
    sub = afr.children[child]
    got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key, None))
    vgfid = GFID(bytes(got.dict[key]))
    fd = Fd(gfid=vgfid, is_dir=True)
    await h.one(child, lambda i: sub.opendir(Loc(gfid=vgfid), fd, None))
    out = []
    try:
        async for e in dir_entries(h, child, fd, xdata={GET_GFID_TYPE: 1}):
            try:
                gfid = GFID(e.name)
            except ValueError:
                continue
            # over the wire a readdir entry carries its type, not an iatt
            out.append((gfid, kind == "entry-changes" or e.type == DT_DIR or
                        e.iatt is not None and e.iatt.is_dir))
    finally:
        await h.on([child], lambda i: sub.releasedir(fd, None))
    return out


async def heal_index(afr: "Replicate", child: int, stats: CrawlStats | None = None,
                     guard: GfidGuard | None = None) -> CrawlStats:
    """afr_shd_index_sweep_all for one brick: heal every gfid of its
    xattrop and dirty indices, then every directory of its name index;
    entries for inodes that exist nowhere are purged.  `stats`, when
    given, is counted into as the sweep goes (the self-heal daemon's crawl
    event); `guard` is shared by the sweeps that must not heal one gfid
    at once.  Files are healed in parallel, directories by the crawl
    itself (the module docstring); each index is done before the next."""
    stats = stats if stats is not None else CrawlStats()
    guard = guard if guard is not None else GfidGuard()
    h = Heal(afr)
    for kind in ("xattrop", "dirty", "entry-changes"):
        listed_at = trio.current_time()
        try:
            entries = await _typed_entries(afr, child, kind)
        except FopError as e:
            if e.errno in (errno.ENOENT, errno.ENODATA):
                continue
            raise
        async with heal_jobs(afr, guard) as queue:
            # directories first (the module docstring); the sort is stable
            for gfid, is_dir in sorted(entries, key=lambda e: not e[1]):
                job = functools.partial(_heal_indexed, h, child, kind, gfid, stats)
                if is_dir:
                    await queue.inline(gfid, job)
                else:
                    # a file another healer began on after the listing is
                    # left to it (GfidGuard); a directory is waited for, as
                    # its entry heal makes the files below it healable
                    await queue.put(gfid, job, since=listed_at)
            stats.note_queue(queue)
    return stats


async def _heal_indexed(h: Heal, child: int, kind: str, gfid: GFID, stats: CrawlStats):
    """afr_shd_index_heal + afr_shd_selfheal.  GlusterFS looks the gfid up
    on the indexing child (gone there: the entry is purged), then the
    heal looks it up on every child; here the heal's look answers both,
    one round trip a file fewer."""
    afr = h.afr
    replies = await h.discover(gfid)
    mine = replies[child]
    if isinstance(mine, FopError) and mine.errno in (errno.ENOENT, errno.ESTALE):
        await _purge_index(h, child, kind, gfid)
        stats.stale_purged += 1
        return
    if not is_ok(mine):
        stats.failed += 1
        return
    try:
        outcome = await heal_gfid(afr, gfid, replies=replies)
    except FopError as e:
        if e.errno == errno.EIO:
            stats.split_brain += 1
            stats.split_brain_gfids.append(gfid)
        elif e.errno in (errno.ENOENT, errno.ESTALE):
            await _purge_index(h, child, kind, gfid)
            stats.stale_purged += 1
        else:
            stats.failed += 1
        return
    if outcome == Outcome.HEALED:
        stats.healed += 1
    elif outcome == Outcome.CLEAN:
        # afr_shd_zero_xattrop: an index link with all-zero changelogs
        # (a brick that died between the link and the xattrop) goes away
        xattr = cl.changelog_dict(afr.pending_keys, None, afr.dirty_key)
        await h.on([i for i in range(h.n) if afr.child_up[i]],
                   lambda i: afr.children[i].xattrop(Loc(gfid=gfid), XattropType.ADD_ARRAY,
                                                     xattr, None))
        stats.skipped += 1
    else:
        stats.skipped += 1


async def _purge_index(h: Heal, child: int, kind: str, gfid: GFID) -> None:
    """afr_shd_entry_purge."""
    sub = h.afr.children[child]
    key = INDEX_GFID_KEYS[kind]
    try:
        got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key,
                                                         None))
        vgfid = GFID(bytes(got.dict[key]))
        loc = Loc(pargfid=vgfid, name=str(gfid))
        if kind == "entry-changes":
            await h.one(child, lambda i: sub.rmdir(loc, 1, None))
        else:
            await h.one(child, lambda i: sub.unlink(loc, 0, None))
    except FopError:
        pass


async def heal_full(afr: "Replicate", child: int | None = None,
                    root: GFID = ROOT_GFID, stats: CrawlStats | None = None,
                    guard: GfidGuard | None = None,
                    position: "SweepPosition | None" = None) -> CrawlStats:
    """afr_shd_full_sweep: walk the namespace as child `child` (every up
    child when None) lists it, from `root`, healing every name and then
    every inode - a directory before what it contains (`stats` and `guard`
    as in `heal_index`).  With a `position` (one child), the sweep
    continues where a saved one stopped, saves its progress as it goes and
    forgets it when done."""
    stats = stats if stats is not None else CrawlStats()
    guard = guard if guard is not None else GfidGuard()
    children = [child] if child is not None else \
        [i for i in range(afr.child_count) if afr.child_up[i] and i != afr.arbiter]
    for c in children:
        await _full_sweep(afr, c, root, stats, guard, position if child is not None else None)
    return stats


#: a directory of a full sweep's stack whose subdirectories must not be
#: stacked again (it was listed before a restart): `Skip` is the set of
#: those already stacked, `FILES_ONLY` all of them
Skip = frozenset
FILES_ONLY = None
NEW: Skip = frozenset()


async def _full_sweep(afr: "Replicate", child: int, root: GFID, stats: CrawlStats,
                      guard: GfidGuard, position: "SweepPosition | None") -> None:
    h = Heal(afr)
    sub = afr.children[child]
    saved = position.load() if position is not None else None
    #: the directories to list, a stack (depth first, as syncop_ftw), each
    #: with the subdirectories not to stack when it is listed: NEW for a
    #: directory never listed; a directory listed before a restart is
    #: listed again and its entries healed again, but the subdirectories
    #: it had stacked are on the stack or finished, so they are skipped
    todo: list[tuple[GFID, Skip | None]]
    if saved is None:
        todo = [(root, NEW)]
        if position is not None:
            position.save(todo, force=True)
        await guard.run(root, lambda: _count(heal_gfid(afr, root), root, stats))
    else:
        todo = saved
        stats.resumed_dirs = len(todo)
    #: directories listed, or being listed, whose entries are not all
    #: healed yet -> how many of those entries (and the listing) are left
    unfinished: dict[GFID, int] = {}
    #: the directory being listed: its gfid, the subdirectories it stacked
    #: (or FILES_ONLY)
    listing: list = []

    def remaining() -> list[tuple[GFID, Skip | None]]:
        """What a restarted sweep has to do, in stack order."""
        out = [(g, FILES_ONLY) for g in unfinished if not listing or g != listing[0]]
        if listing:
            out.append((listing[0], None if listing[1] is None else frozenset(listing[1])))
        return out + todo

    def finished_one(dir_gfid: GFID) -> None:
        # called on success only: a cancelled sweep, or an entry whose
        # heal failed (a brick went away), must not let a directory be
        # saved as done - it is listed again when the sweep resumes
        unfinished[dir_gfid] -= 1
        if unfinished[dir_gfid]:
            return
        del unfinished[dir_gfid]
        stats.dirs_done += 1
        if position is not None:
            position.save(remaining())

    async def heal_entry_job(parent: GFID, name: str, gfid: GFID) -> None:
        """The name, then the inode; the parent is done with this entry
        unless the heal failed."""
        try:
            await heal_name(afr, parent, name)
        except FopError as err:
            if err.errno == errno.EIO:
                stats.split_brain += 1
                stats.split_brain_gfids.append(gfid)
                finished_one(parent)
                return
        if await _count(heal_gfid(afr, gfid), gfid, stats):
            finished_one(parent)

    async with heal_jobs(afr, guard) as queue:
        while todo:
            gfid, skip = todo.pop()
            stacked: set[GFID] | None = None if skip is FILES_ONLY else set(skip)
            listing[:] = [gfid, stacked]
            unfinished[gfid] = unfinished.get(gfid, 0) + 1
            stats.dirs_listed += 1
            fd = Fd(gfid=gfid, is_dir=True)
            try:
                await h.one(child, lambda i: sub.opendir(Loc(gfid=gfid), fd, None))
            except FopError as e:
                if e.errno not in (errno.ENOENT, errno.ESTALE):
                    raise  # the sweep stops (and resumes here), as syncop_ftw's
                listing.clear()
                finished_one(gfid)  # gone since it was stacked: nothing below to heal
                continue
            try:
                async for e in dir_entries(h, child, fd, plus=True):
                    if e.iatt is None or gfid == ROOT_GFID and afr.is_private_dir(e.name):
                        continue
                    egfid = e.iatt.gfid
                    job = functools.partial(heal_entry_job, gfid, e.name, egfid)
                    unfinished[gfid] += 1
                    if e.iatt.is_dir:
                        # the crawl heals a directory itself, before listing it
                        await queue.inline(egfid, job)
                        if stacked is not None and egfid not in stacked:
                            todo.append((egfid, NEW))
                            stacked.add(egfid)
                    else:
                        await queue.put(egfid, job)
            finally:
                await h.on([child], lambda i: sub.releasedir(fd, None))
            listing.clear()
            finished_one(gfid)
        stats.note_queue(queue)
    if position is not None:
        position.clear()


class SweepPosition:
    """Where one child's full sweep is: the directories it has still to
    list or to finish (`_full_sweep`'s stack), in
    ``DIR/<replicate>.<child>.full-sweep.json``,
    written (atomically, at most every `SAVE_INTERVAL` seconds, so that a
    wide tree costs little) as directories are done, removed when the
    sweep ends.  A file from another volume (its volume-id) or unreadable
    is ignored: the sweep starts over, as GlusterFS's does."""

    SAVE_INTERVAL = 1.0
    VERSION = 1

    def __init__(self, directory: str | os.PathLike, replicate: str, child: str,
                 volume_id: str | None):
        self.path = Path(directory) / f"{replicate}.{child}.full-sweep.json"
        self.replicate = replicate
        self.child = child
        self.volume_id = volume_id or ""
        self._last_save = 0.0

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> list[tuple[GFID, frozenset | None]] | None:
        """The saved stack (see `_full_sweep`), or None: no sweep to resume."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != self.VERSION or \
                    data.get("volume-id", "") != self.volume_id or \
                    data.get("replicate") != self.replicate or data.get("child") != self.child:
                raise ValueError("saved by another volume or version")
            todo = [(GFID(g), None if skip is None else frozenset(GFID(x) for x in skip))
                    for g, skip in data["todo"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring the saved full sweep %s: %s", self.path, e)
            return None
        log.info("resuming the full sweep of %s with %d directories left", self.child,
                 len(todo))
        return todo

    def save(self, todo: list[tuple[GFID, frozenset | None]], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < self.SAVE_INTERVAL:
            return
        self._last_save = now
        data = {"version": self.VERSION, "volume-id": self.volume_id,
                "replicate": self.replicate, "child": self.child, "saved": time.time(),
                # [gfid, null (list its files only) or the subdirectories
                # not to stack again ([] for a directory never listed)]
                "todo": [[str(g), None if skip is None else sorted(str(x) for x in skip)]
                         for g, skip in todo]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            # small and at most once a second: written in the event loop
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot save the full sweep's position in %s: %s", self.path, e)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove %s: %s", self.path, e)


async def _count(coro, gfid: GFID, stats: CrawlStats) -> bool:
    """Count one heal's outcome; False when it failed (not a split-brain)."""
    try:
        outcome = await coro
    except FopError as e:
        if e.errno == errno.EIO:
            stats.split_brain += 1
            stats.split_brain_gfids.append(gfid)
            return True
        stats.failed += 1
        return False
    if outcome == Outcome.HEALED:
        stats.healed += 1
    else:
        stats.skipped += 1
    return True


async def heal_info_entries(afr: "Replicate", child: int,
                            split_brain_only: bool = False) -> list[tuple[GFID, str, str]]:
    """What ``volume heal NAME info [split-brain]`` prints for one brick
    (glfsheal): every inode its indices list that still needs a heal, as
    (gfid, path, status) - the path from the brick's
    ``glusterfs.gfid2path`` (``<gfid:UUID>`` when unknown), the status
    from `heal_info`; "no-heal" entries are left out."""
    h = Heal(afr)
    sub = afr.children[child]
    seen: dict[GFID, None] = {}
    for kind in ("xattrop", "dirty", "entry-changes"):
        try:
            for gfid in await pending_entries(afr, child, kind):
                seen.setdefault(gfid)
        except FopError:
            continue
    out = []
    for gfid in seen:
        status = await heal_info(afr, gfid)
        if status == "no-heal" or (split_brain_only and not status.startswith("split-brain")):
            continue
        try:
            got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=gfid),
                                                            GFID_TO_PATH_KEY, None))
            path = got.dict.get(GFID_TO_PATH_KEY)
            path = path.decode() if isinstance(path, bytes) else str(path)
        except FopError:
            path = f"<gfid:{gfid}>"
        out.append((gfid, path, status))
    return out
