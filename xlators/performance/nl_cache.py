"""performance/nl-cache: the negative lookup cache.

Follows GlusterFS's nl-cache (xlators/performance/nl-cache): a lookup that
answers ENOENT leaves the name in its directory's negative entries, and
the next lookups of that name in that directory are answered ENOENT here,
without a request, for `nl-cache-timeout` seconds (60) from the moment the
directory's cache started.  Creating workloads (look up, then create) and
SMB-style repeated stats of missing names are what it serves.

* `nl-cache-positive-entry`: a directory made by mkdir through this graph
  starts with a complete list of its entries (empty), and the names
  created in it are added; while it is complete every lookup of a name it
  lacks is answered ENOENT here.  Unlinks, rmdirs and renames through this
  graph move names between the two lists.
* Without it, an entry fop through this graph in a directory (create,
  mknod, mkdir, symlink, link, rename, unlink, rmdir) drops that
  directory's negative entries - GlusterFS instead consults the inode
  table's dentries, which glusterpy's table does not keep.
* Every fill carries the generation taken when its lookup started; a
  lookup that raced an entry fop in the same directory does not bring back
  a negative entry the fop made stale.
* Across clients it is only as right as its invalidations: GlusterFS
  expects features.cache-invalidation on the volume, whose upcalls (a
  changed directory, or a changed entry's parent) clear the directories
  concerned here too.  Without upcalls - glusterpy's bricks send none - a
  name another client creates stays invisible here for up to
  `nl-cache-timeout`; that is why glusterd leaves nl-cache out unless
  performance.nl-cache is on (GlusterFS 10's default: off).
* CHILD_DOWN/UP makes every cache older than it invalid (GlusterFS's
  last_child_down); PARENT_DOWN clears them all.
* Memory: each directory's record (its slot in the inode table) counts
  its names; past `nl-cache-limit` bytes in all the least recently used
  directories are cleared, and records go with their inodes.

Not done: GlusterFS's get_real_filename getxattr (a Samba case-insensitive
lookup served from positive entries).
"""

from __future__ import annotations

import errno
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from glusterpy.fops import GFID, FopError
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Event, Translator

UPCALL_CACHE_INVALIDATION = 1      # gf_upcall_event_t
UP_TIMES, UP_PARENT_TIMES = 0x10, 0x200

#: what one record and one name count towards nl-cache-limit (GlusterFS counts
#: sizeof(nlc_ctx_t) and sizeof(nlc_ne_t) + the name)
_RECORD_COST, _NAME_COST = 128, 48


@dataclass(slots=True)
class _NlcDir:
    """What nl-cache knows of one directory's entries."""

    started: float
    negative: set[str] = field(default_factory=set)
    positive: set[str] = field(default_factory=set)
    #: `positive` lists every entry (a directory made here)
    complete: bool = False
    cost: int = _RECORD_COST
    #: generation of the last entry fop in it: lookups started before are stale
    changed: int = 0


class NlCache(Translator):
    FOPS_NEVER_SUSPEND = True  # it awaits only its child

    OPTIONS = (
        Option("nl-cache-positive-entry", OptionType.BOOL, "false",
               "Cache the name of the files/directories that was looked up and are "
               "present in a directory",
               set_keys=("performance.nl-cache-positive-entry",)),
        Option("nl-cache-limit", OptionType.SIZE, "131072",
               "the value over which caching will be disabled for a while and the cache "
               "is cleared based on LRU",
               min=0, max=(1 << 63) - 1, set_keys=("performance.nl-cache-limit",)),
        Option("nl-cache-timeout", OptionType.TIME, "60",
               "Time period after which cache has to be refreshed",
               min=0, max=(1 << 31) - 1, set_keys=("performance.nl-cache-timeout",)),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable nl cache translator",
               set_keys=("performance.nl-cache-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: directories with a record, least recently used first (gfid -> None)
        self._lru: OrderedDict[GFID, None] = OrderedDict()
        self._cost = 0
        self._generation = itertools.count(1)
        self._unrecorded_change = 0
        self._last_child_event = time.monotonic()
        self.hits = self.misses = self.invalidations = 0

    def options_changed(self, old) -> None:
        if self.opts.pass_through and not old.pass_through:
            self._clear_all()
        self._prune()

    def notify(self, event, source, data=None):
        if event in (Event.CHILD_DOWN, Event.CHILD_UP, Event.SOME_DESCENDENT_DOWN,
                     Event.SOME_DESCENDENT_UP):
            self._last_child_event = time.monotonic()
        elif event == Event.PARENT_DOWN:
            self._clear_all()
        elif event == Event.UPCALL:
            self._upcall(data)
        super().notify(event, source, data)

    def _upcall(self, data: Any) -> None:
        """nlc_invalidate: a directory that changed, or the parents of an
        entry that changed, lose their lists."""
        if getattr(data, "event_type", None) != UPCALL_CACHE_INVALIDATION:
            return
        message = getattr(data, "message", None)
        flags = getattr(message, "flags", 0)
        if not flags & (UP_TIMES | UP_PARENT_TIMES):
            return
        self.invalidations += 1
        self._drop(data.gfid)
        for name in ("parent_stat", "oldparent_stat"):
            stat = getattr(message, name, None)
            gfid = getattr(stat, "gfid", None)
            if gfid is not None and not GFID(gfid).is_null:
                self._drop(GFID(gfid))

    # -- lookup ------------------------------------------------------------------------

    async def lookup(self, loc, xdata=None):
        if self.opts.pass_through or loc.pargfid is None or not loc.name or \
                loc.gfid is not None:
            return await self.first_child.lookup(loc, xdata)
        record = self._valid(loc.pargfid)
        if record is not None and (loc.name in record.negative or
                                   (record.complete and loc.name not in record.positive)):
            self.hits += 1
            self._lru.move_to_end(loc.pargfid)
            raise FopError(errno.ENOENT, f"{self.name}: negative entry cached")
        incident = next(self._generation)
        try:
            return await self.first_child.lookup(loc, xdata)
        except FopError as e:
            if e.errno == errno.ENOENT:
                self.misses += 1
                self._add_negative(loc.pargfid, loc.name, incident)
            raise

    # -- entry fops: the directories they change ---------------------------------------------

    async def _entry_fop(self, gone: list, made: list, call, *args):
        """Wind an entry fop; `gone`/`made` are the (parent gfid, name) it
        removes and adds.  Any record it touches is stale for lookups that
        started before."""
        for parent, _ in gone + made:
            self._changed(parent)
        try:
            reply = await call(*args)
        except BaseException:
            for parent, _ in gone + made:
                self._changed(parent, drop=True)
            raise
        if self.opts.nl_cache_positive_entry and not self.opts.pass_through:
            for parent, name in gone:
                self._changed(parent)
                record = self._valid(parent)
                if record is not None and name:
                    record.positive.discard(name)
                    self._name(record, name, record.negative, add=True)
            for parent, name in made:
                self._changed(parent)
                record = self._valid(parent, create=True)
                if record is not None and name:
                    self._name(record, name, record.negative, add=False)
                    self._name(record, name, record.positive, add=True)
        else:
            for parent, _ in gone + made:
                self._changed(parent, drop=True)
        self._prune()
        return reply

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        return await self._entry_fop([], [(loc.pargfid, loc.name)], self.first_child.create,
                                     loc, flags, mode, umask, fd, xdata)

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._entry_fop([], [(loc.pargfid, loc.name)], self.first_child.mknod,
                                     loc, mode, rdev, umask, xdata)

    async def mkdir(self, loc, mode, umask, xdata=None):
        reply = await self._entry_fop([], [(loc.pargfid, loc.name)], self.first_child.mkdir,
                                      loc, mode, umask, xdata)
        if self.opts.nl_cache_positive_entry and not self.opts.pass_through:
            # a new directory is empty: every name in it is negative for now
            record = self._valid(reply.iatt.gfid, create=True)
            if record is not None:
                record.complete = True
        return reply

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._entry_fop([], [(loc.pargfid, loc.name)], self.first_child.symlink,
                                     linkname, loc, umask, xdata)

    async def link(self, oldloc, newloc, xdata=None):
        return await self._entry_fop([], [(newloc.pargfid, newloc.name)], self.first_child.link,
                                     oldloc, newloc, xdata)

    async def unlink(self, loc, xflags, xdata=None):
        return await self._entry_fop([(loc.pargfid, loc.name)], [], self.first_child.unlink,
                                     loc, xflags, xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        self._drop(loc.gfid)
        return await self._entry_fop([(loc.pargfid, loc.name)], [], self.first_child.rmdir,
                                     loc, xflags, xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        return await self._entry_fop([(oldloc.pargfid, oldloc.name)],
                                     [(newloc.pargfid, newloc.name)], self.first_child.rename,
                                     oldloc, newloc, xdata)

    # -- the records --------------------------------------------------------------------

    def _valid(self, gfid, create: bool = False) -> _NlcDir | None:
        """The directory's record if its lists are still valid (a new,
        empty one with `create`); an expired record is emptied."""
        if gfid is None:
            return None
        record = self.itable.peek_ctx(self, gfid)
        now = time.monotonic()
        if record is not None and (now - record.started >= self.opts.nl_cache_timeout
                                   or record.started < self._last_child_event):
            self._drop(gfid)
            record = None
        if record is None and create and not self.opts.pass_through:
            # a new record knows nothing of the changes made while it had none
            record = _NlcDir(started=now, changed=self._unrecorded_change)
            self.itable.set_ctx(self, gfid, record)
            self._lru[gfid] = None
            self._cost += record.cost
        return record

    def _add_negative(self, parent: GFID, name: str, incident: int) -> None:
        if self.opts.pass_through:
            return
        record = self._valid(parent, create=True)
        if record is None or record.changed > incident:
            return  # an entry fop ran in the directory since the lookup started
        self._name(record, name, record.negative, add=True)
        self._lru.move_to_end(parent)
        self._prune()

    def _name(self, record: _NlcDir, name: str, names: set[str], add: bool) -> None:
        cost = _NAME_COST + len(name)
        if add and name not in names:
            names.add(name)
            record.cost += cost
            self._cost += cost
        elif not add and name in names:
            names.discard(name)
            record.cost -= cost
            self._cost -= cost

    def _changed(self, parent, drop: bool = False) -> None:
        generation = next(self._generation)
        record = self.itable.peek_ctx(self, parent)
        if record is None:
            self._unrecorded_change = generation
        elif drop:
            self._drop(parent)
            self._unrecorded_change = generation
        else:
            record.changed = generation

    def _drop(self, gfid) -> None:
        record = self.itable.del_ctx(self, gfid)
        if record is not None:
            self._cost -= record.cost
            self._lru.pop(gfid, None)

    def _prune(self) -> None:
        while self._cost > self.opts.nl_cache_limit and self._lru:
            gfid = next(iter(self._lru))
            self._drop(gfid)

    def _clear_all(self) -> None:
        for gfid in list(self._lru):
            self._drop(gfid)

    def forget(self, inode) -> None:
        record = inode.ctx[self]
        self._cost -= record.cost
        self._lru.pop(inode.gfid, None)

    def dump_state(self) -> dict[str, Any]:
        return {"directories": len(self._lru), "cost": self._cost, "hits": self.hits,
                "misses": self.misses, "invalidations": self.invalidations}


TRANSLATOR = NlCache
