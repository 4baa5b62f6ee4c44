"""The geo-replication worker's changelog crawl: what changed, from the
brick's own journal, replayed on the secondary by gfid.

After its first full crawl ("Hybrid Crawl", worker.py) a worker no longer
walks the whole brick: it reads the changelogs features/changelog rolled
over on its brick (glusterpy/changelog.py: ``.glusterfs/changelogs``, the
``htime/HTIME.<ts>`` index) from the sync time (stime) on - "History
Crawl" while it catches up with the changelogs that were there when the
worker started, "Changelog Crawl" after that, as GlusterFS's gsyncd names
them.  Each crawl takes every changelog rolled over since the last one it
replayed as one batch.

Live changes: the journal being written (CHANGELOG) is not read.  gsyncd
waits for the brick's timer to roll it over (`changelog.rollover-time`,
15 s by default; libgfchangelog announces each rollover); this worker
does not wait: when a crawl finds nothing rolled over to replay and its
brick's CHANGELOG holds records, or a checkpoint is pending, it asks the
bricks for an explicit rollover (features/changelog's setxattr of
glusterfs.changelog.rollover on the root, as gsyncd's pid - glusterpy's
own, GlusterFS rolls over early only for a snapshot's barrier) and
replays what that rolled over (`ChangelogCrawl.ask_rollover`; a backlog
is replayed first, as the History Crawl it is).  A change reaches the
secondary within about change-interval and a checkpoint completes within
a crawl or two, whatever rollover-time is.  The htime index is followed
as it grows (changelog.HtimeReader: each crawl reads only the lines added
since the last, and starts over when a new HTIME file begins).

Proof before trust (the earlier hook skipped crawls on no evidence, and
sessions stopped syncing): a batch is replayed only when the journal shows
it has been written without a hole since stime - otherwise a full crawl,
with the reason logged and in the status file (`crawl_reason`):

* the worker has no stime yet (the first crawl is a full one);
* the brick's changelog is off in the volume (`changelog.changelog`), or
  has no htime index;
* the current HTIME file - a new one each time the journal is switched on -
  began after stime (changes between were never journaled);
* two rollovers since stime, or the last one and now, are further apart
  than twice rollover-time plus 10 s (the journal stopped, or the brick was
  down: a full crawl rather than a guess);
* a changelog that cannot be read or parsed, or a changed inode whose name
  cannot be found on the brick (`storage.gfid2path` off).

Replay: the batch's records are reduced to what they touched - names
(parent gfid and basename of E records, both names of a RENAME) and inodes
(D and M records, and the inodes E records made or linked) - and each is
brought to what the primary holds now, with the full crawl's per-entry
code (Worker.sync_entry): a name the brick holds is created, renamed (the
secondary holds the gfid under a name the batch touched), hard-linked or
replaced; a touched name the whole primary (asked through its client) no
longer has is removed from the secondary, deepest first, after the
creations and renames so a rename never becomes delete-and-copy; the data
of each inode is compared and sent once per batch however many changelogs
name it (GlusterFS #4321), its metadata and user xattrs likewise; the
parents of touched names get their times last.  Names and inodes are
resolved to paths on the brick: a directory's gfid through its .glusterfs
handle (a symlink to its parent's), a file's through its
trusted.gfid2path.* xattrs.  A directory the secondary had under no
touched name is created and its subtree synced from the brick (it was made,
or moved from a place this batch does not name).  The stime becomes the
time of the last changelog replayed only when the batch had no failures:
a failed batch is replayed again from the old stime.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat as st
import time

import trio

from .. import changelog as cl
from ..fops import GFID, ROOT_GFID, ClientPid
from ..keys import CHANGELOG_ROLLOVER_KEY, GFID2PATH_PREFIX, GFID_KEY
from . import mirrored

log = logging.getLogger("glusterpy.georep")

CRAWL_HISTORY = "History Crawl"
CRAWL_CHANGELOG = "Changelog Crawl"
#: the most changelogs one batch replays (gsyncd's changelog-batch-size
#: counts bytes; a count keeps a backlog's batches bounded too)
BATCH_MAX = 1000
#: beyond twice rollover-time, the slack a busy brick may roll over late
GAP_SLACK = 10.0


class FullCrawlNeeded(Exception):
    """The journal cannot prove it holds every change since stime."""


class Batch:
    """Changelogs to replay as one: their records and the last one's time."""

    def __init__(self, rollovers: list[tuple[int, str, bool]], records: list[cl.Record],
                 previous: int | None = None):
        self.rollovers = rollovers
        self.records = records
        self.end = rollovers[-1][0] if rollovers else None
        #: the rollover just before the batch's first (None: none)
        self.previous = previous


def changelog_dir(brick: str) -> str:
    return os.path.join(brick, cl.DEFAULT_DIR)


def pending(brick: str, stime: float, done: int | None, rollover_time: float,
            now: float, index: cl.HtimeReader | None = None,
            ) -> tuple[list[tuple[int, str, bool]], int | None]:
    """The rollovers of `brick`'s journal to replay, oldest first, and the
    time of the rollover before the first of them (None: none): those at
    or after stime's second (a changelog named T may hold changes of T's
    second made after the stime of that second), and after `done`, the last
    one this worker replayed; FullCrawlNeeded unless the index shows the
    journal written without a hole from stime to now (module docstring).
    `index`, the reader of this brick's htime index a worker keeps from
    crawl to crawl, reads only what the index gained since."""
    cdir = changelog_dir(brick)
    files = cl.htime_files(cdir)
    if not files:
        raise FullCrawlNeeded(f"no changelog index in {cdir}")
    started = int(os.path.basename(files[-1]).partition(".")[2])
    base = int(stime)
    if started > base:
        raise FullCrawlNeeded(f"the changelog was switched on at {started}, after the "
                              f"sync time {base}")
    try:
        rolls = [r for r in (index or cl.HtimeReader(cdir)).read(keep_from=base)
                 if r[0] >= started]
    except (OSError, cl.ChangelogError) as e:
        raise FullCrawlNeeded(f"the changelog index is unreadable: {e}") from None
    longest = 2 * rollover_time + GAP_SLACK
    prev = max([r[0] for r in rolls if r[0] < base], default=started)
    for ts, _, _ in rolls:
        if ts < base:
            continue
        if ts - prev > longest:
            raise FullCrawlNeeded(f"no rollover from {prev} to {ts}: the changelog stopped "
                                  f"or the brick was down")
        prev = ts
    if now - prev > longest:
        raise FullCrawlNeeded(f"no rollover since {prev}: the changelog is not being written")
    out = [r for r in rolls if r[0] >= base and (done is None or r[0] > done)][:BATCH_MAX]
    before = max((r[0] for r in rolls if out and r[0] < out[0][0]), default=None)
    return out, before


def journal_has_records(cdir: str) -> bool:
    """True when the journal being written (CHANGELOG) holds more than its
    header: one stat, no read (both encodings' headers are as long)."""
    try:
        return os.stat(os.path.join(cdir, cl.CHANGELOG_FILE_NAME)).st_size > \
            len(cl.header())
    except OSError:
        return False


def read_batch(rollovers: list[tuple[int, str, bool]], previous: int | None = None) -> Batch:
    records: list[cl.Record] = []
    for _, path, usable in rollovers:
        if not usable:
            continue  # an empty changelog, deleted at its rollover
        try:
            with open(path, "rb") as f:
                records.extend(cl.parse(f.read()))
        except (OSError, cl.ChangelogError) as e:
            raise FullCrawlNeeded(f"changelog {path}: {e}") from None
    return Batch(rollovers, records, previous)


def synced_to(batch: Batch) -> int:
    """The time the secondary holds every change before, once `batch` is
    replayed: its last rollover's time - less one second when the rollover
    before was in the second before, since features/changelog names a
    second rollover within one second after the next second (a name a
    little ahead of the cut it stands for)."""
    end = batch.end
    assert end is not None
    if any(ts == end - 1 for ts, _, _ in batch.rollovers) or batch.previous == end - 1:
        return end - 1
    return end


# --------------------------------------------------------------------------
# gfids to paths on the brick (no IO through the volume)


def _handle(brick: str, gfid: GFID) -> str:
    h = str(gfid)
    return os.path.join(brick, ".glusterfs", h[0:2], h[2:4], h)


def dir_path(brick: str, gfid: GFID) -> str | None:
    """The path from the volume root of the directory `gfid`, following
    the .glusterfs handles (each "../../xx/yy/<parent>/<name>") up to the
    root; None when it is gone."""
    parts: list[str] = []
    seen = 0
    while gfid != ROOT_GFID:
        try:
            target = os.readlink(_handle(brick, gfid))
        except OSError:
            return None
        bits = target.split("/")
        if len(bits) != 6 or bits[:2] != ["..", ".."]:
            return None
        try:
            gfid = GFID(bits[4])
        except ValueError:
            return None
        parts.append(bits[5])
        seen += 1
        if seen > 4096:  # a loop of handles
            return None
    return "/" + "/".join(reversed(parts))


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def brick_gfid(brick: str, path: str) -> GFID | None:
    try:
        return GFID(os.getxattr(brick + path, GFID_KEY, follow_symlinks=False))
    except (OSError, ValueError):
        return None


def inode_paths(brick: str, gfid: GFID) -> list[str]:
    """Every path the brick holds the inode `gfid` under: [] when it is gone;
    FullCrawlNeeded when it is there under names that cannot be found."""
    if gfid == ROOT_GFID:
        return []
    handle = _handle(brick, gfid)
    try:
        hst = os.lstat(handle)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise FullCrawlNeeded(f"handle of {gfid}: {e.strerror}") from None
    if st.S_ISLNK(hst.st_mode) and hst.st_nlink == 1:
        p = dir_path(brick, gfid)  # a directory's handle: a symlink
        return [p] if p is not None else []
    if hst.st_nlink <= 1:
        return []  # the handle is its only name left: unlinked
    out = []
    try:
        keys = [k for k in os.listxattr(handle, follow_symlinks=False)
                if k.startswith(GFID2PATH_PREFIX)]
        values = [os.getxattr(handle, k, follow_symlinks=False) for k in keys]
    except OSError as e:
        if e.errno == errno.ENOENT:
            return []
        raise FullCrawlNeeded(f"gfid2path of {gfid}: {e.strerror}") from None
    for v in values:
        text = os.fsdecode(v.rstrip(b"\0"))
        pg, _, name = text.partition("/")
        try:
            parent = dir_path(brick, GFID(pg))
        except ValueError:
            continue
        if parent is None or not name:
            continue
        path = _join(parent, name)
        if brick_gfid(brick, path) == gfid:
            out.append(path)
    if not out:
        raise FullCrawlNeeded(f"{gfid} has {hst.st_nlink - 1} names on the brick and no "
                              f"gfid2path that finds one (storage.gfid2path off?)")
    return out


class Plan:
    """What a batch touched, as paths on the brick: `names` the brick holds
    (to sync), `gone` touched names the brick does not hold (to remove from
    the secondary if the whole primary lacks them too), `parents` the
    directories whose entries changed (their times)."""

    def __init__(self):
        self.names: set[str] = set()
        self.gone: set[str] = set()
        self.parents: set[str] = set()


def plan(brick: str, records: list[cl.Record]) -> Plan:
    touched: set[tuple[bytes, str]] = set()
    inodes: set[bytes] = set()
    for r in records:
        if r.type == cl.ENTRY:
            touched.add((bytes(r.pargfid), r.basename))
            if r.fop == cl.FOP_RENAME:
                touched.add((bytes(r.new_pargfid), r.new_basename))
            if r.fop not in cl.DELETE_FOPS:
                inodes.add(bytes(r.gfid))
        else:
            inodes.add(bytes(r.gfid))
    p = Plan()
    dirs: dict[bytes, str | None] = {}
    for pg, name in touched:
        if pg not in dirs:
            dirs[pg] = dir_path(brick, GFID(pg))
        parent = dirs[pg]
        if parent is None:
            continue  # its directory is gone: removed with it
        path = _join(parent, name)
        if not mirrored(path):
            continue
        if parent != "/":
            p.parents.add(parent)
        (p.names if os.path.lexists(brick + path) else p.gone).add(path)
    for g in inodes:
        p.names.update(x for x in inode_paths(brick, GFID(g)) if mirrored(x))
    return p


# --------------------------------------------------------------------------
# The replay, a mixin of Worker (its full crawl's per-entry code)


def _depth(path: str) -> int:
    return path.count("/")


class _BrickPaths(dict):
    """gfid -> its names on the brick, found when asked (sync_entry asks
    where the primary holds an inode the secondary has under a replaced
    name)."""

    def __init__(self, brick: str):
        super().__init__()
        self.brick = brick

    def get(self, key, default=None):
        if key not in self:
            try:
                self[key] = inode_paths(self.brick, GFID(key))
            except FullCrawlNeeded:
                self[key] = []
        return dict.get(self, key, default)


class ChangelogCrawl:
    """Worker's changelog side (module docstring); `crawl` is the entry."""

    #: the last changelog replayed by this process; None: from stime
    _done: int | None = None
    _live_since: float = 0.0
    #: the brick's htime index as read so far (HtimeReader)
    _index: cl.HtimeReader | None = None

    def _journal_conf(self) -> tuple[bool, float]:
        """(the bricks' changelog on, its rollover-time): glusterd's
        volume options, parsed (glusterd/georep.py)."""
        c = self.conf.get("changelog") or {}
        try:
            return c.get("changelog") is True, float(c.get("rollover-time", 15))
        except (TypeError, ValueError):
            return False, 15.0

    def next_batch(self) -> Batch:
        if self.stime is None:
            raise FullCrawlNeeded("no sync time on the secondary yet")
        on, rollover = self._journal_conf()
        if not on:
            raise FullCrawlNeeded("changelog.changelog is off for the volume")
        cdir = changelog_dir(self.conf["brick"])
        if self._index is None or self._index.dir != cdir:
            self._index = cl.HtimeReader(cdir)
        rolls, before = pending(self.conf["brick"], self.stime, self._done, rollover,
                                time.time(), self._index)
        return read_batch(rolls, before)

    async def crawl(self, primary, secondary, started: float):
        """One crawl: (counts, the time the secondary is now synced to, or
        None when nothing was rolled over since the last one)."""
        crawls = self.status.extra.setdefault("crawls", {})
        try:
            batch = await trio.to_thread.run_sync(self.next_batch)
            # caught up with what the timer rolled over: the rest now
            if batch.end is None and await self.ask_rollover(primary):
                batch = await trio.to_thread.run_sync(self.next_batch)
        except FullCrawlNeeded as e:
            return await self._full_instead(primary, secondary, started, e)
        mode = CRAWL_HISTORY if batch.end is not None and batch.end < self._live_since \
            else CRAWL_CHANGELOG
        self.status.crawl_status = mode
        self.status.extra["crawl_reason"] = None
        if batch.end is None:
            self.status.write()
            from .worker import Counts
            return Counts(), None
        self.status.write()
        try:
            counts = await self.replay(primary, secondary, batch)
        except FullCrawlNeeded as e:
            return await self._full_instead(primary, secondary, started, e)
        crawls[mode] = crawls.get(mode, 0) + 1
        self.status.extra["changelogs_replayed"] = \
            self.status.extra.get("changelogs_replayed", 0) + len(batch.rollovers)
        if counts.failures:
            return counts, None
        self._done = batch.end
        return counts, max(float(synced_to(batch)), self.stime or 0.0)

    async def ask_rollover(self, primary) -> bool:
        """Have the bricks roll their journals over now (features/changelog's
        explicit rollover, a setxattr of CHANGELOG_ROLLOVER_KEY on the
        volume root as gsyncd's pid; replicate and distribute wind it to
        every brick) when this crawl found nothing rolled over to replay
        and would otherwise wait for the timer: the brick's CHANGELOG holds
        records (a change reaches the secondary
        within change-interval, whatever rollover-time is), or a checkpoint
        is pending (its completion needs a rollover after it, even with no
        change since).  Nothing else asks: a rollover of an empty journal
        costs a line in the htime index (the journal is deleted), which the
        timer already adds every rollover-time.  Not asked before a full
        crawl (no stime) or with the journal off.  A refusal (a brick
        without the explicit rollover) only means waiting for the timer.
        True when asked and done."""
        if self.stime is None or not self._journal_conf()[0]:
            return False
        cp = self.conf["session"].get("checkpoint")
        waiting = cp is not None and self.stime < cp
        if not waiting and not await trio.to_thread.run_sync(
                journal_has_records, changelog_dir(self.conf["brick"])):
            return False
        own = primary.identity
        primary.identity = dataclasses.replace(own, pid=ClientPid.GSYNCD)
        try:
            await primary.setxattr("/", CHANGELOG_ROLLOVER_KEY, b"1")
        except OSError as e:
            log.info("explicit rollover refused (%s): waiting for rollover-time", e)
            return False
        finally:
            primary.identity = own
        self.status.extra["rollovers_asked"] = self.status.extra.get("rollovers_asked", 0) + 1
        return True

    async def _full_instead(self, primary, secondary, started: float, why: FullCrawlNeeded):
        """The journal cannot prove it holds every change: a full crawl,
        its reason in the status; the secondary is then synced to `started`."""
        from .worker import CRAWL_FULL
        log.info("full crawl: %s", why)
        self.status.crawl_status = CRAWL_FULL
        self.status.extra["crawl_reason"] = str(why)
        self.status.write()
        counts = await self.full_crawl(primary, secondary)
        crawls = self.status.extra.setdefault("crawls", {})
        crawls[CRAWL_FULL] = crawls.get(CRAWL_FULL, 0) + 1
        self._done = None
        return counts, started

    async def replay(self, primary, secondary, batch: Batch):
        from .worker import Counts, _flag
        brick = self.conf["brick"]
        counts = Counts()
        p = await trio.to_thread.run_sync(plan, brick, batch.records)
        sync_xattrs = _flag(self.conf["config"].get("sync-xattrs", "true"))
        self._brick_paths = _BrickPaths(brick)
        # where the secondary holds the inodes of the touched names now:
        # a rename's source is among them
        by_gfid: dict[bytes, list[str]] = {}
        for path in sorted(p.names | p.gone | p.parents):
            g = await self._sec_gfid(secondary, path)
            if g is not None:
                by_gfid.setdefault(bytes(g), []).append(path)
        done: set[str] = set()
        dirs: list[tuple[str, os.stat_result]] = []
        queue = sorted(p.names | p.parents, key=lambda x: (_depth(x), x))
        while queue:
            path = queue.pop(0)
            if path in done:
                continue
            done.add(path)
            e = await trio.to_thread.run_sync(self._brick_entry, path)
            if e is None:
                continue
            try:
                pst = await primary.lstat(path)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ESTALE):
                    continue
                counts.failures += 1
                log.warning("%s: lstat on the primary: %s", path, err)
                continue
            known = bytes(e.gfid) in by_gfid
            try:
                await self.sync_entry(primary, secondary, e, pst, {}, by_gfid,
                                      p.names, counts, sync_xattrs)
            except OSError as err:
                counts.failures += 1
                log.warning("%s: %s", path, err)
                continue
            if st.S_ISDIR(e.mode):
                dirs.append((path, pst))
                if not known:
                    # made on the secondary just now: what is inside comes
                    # from the brick, whatever the batch names
                    from .worker import crawl_brick
                    sub = await trio.to_thread.run_sync(crawl_brick, brick, path)
                    queue[0:0] = [s.path for s in sub if s.path not in done]
        if not _flag(self.conf["config"].get("ignore-deletes", "false")):
            await self.delete_absent(primary, secondary, p.gone, counts)
        for path, pst in reversed(dirs):
            try:
                cur = await secondary.lstat(path)
                if cur.st_mtime_ns != pst.st_mtime_ns:
                    await secondary.utime(path, ns=(pst.st_atime_ns, pst.st_mtime_ns),
                                          follow_symlinks=False)
                    counts.meta += 1
            except OSError as err:
                if err.errno not in (errno.ENOENT, errno.ESTALE):
                    counts.failures += 1
                    log.warning("%s: times on the secondary: %s", path, err)
        return counts

    def _brick_entry(self, path: str):
        from .worker import Entry, is_dht_linkfile
        full = self.conf["brick"] + path
        try:
            s = os.lstat(full)
            gfid = GFID(os.getxattr(full, GFID_KEY, follow_symlinks=False))
        except (OSError, ValueError):
            return None
        if is_dht_linkfile(full, s):
            return None
        return Entry(path, gfid, s.st_mode, s.st_ctime)


__all__ = ["ChangelogCrawl", "FullCrawlNeeded", "Batch", "pending", "read_batch", "plan",
           "dir_path", "inode_paths", "CRAWL_HISTORY", "CRAWL_CHANGELOG"]
