"""Moving one file to its hashed brick: the data-movement primitive of rebalance.

`DhtMigrate.migrate_file(loc)` is cluster/distribute's `migrate_file`
building block (beside set_volume_commit_hash and file_placement, the other
two building blocks of rebalance this module holds; fix_layout is in
selfheal.py).  It follows GlusterFS's
dht_migrate_file (xlators/cluster/dht/src/dht-rebalance.c) phase by phase,
so that clients of either implementation see the states they expect on the
bricks:

1. The destination is the linkto file on the hashed brick (created, with the
   file's gfid and a linkto xattr naming the source, when missing); it is
   cleared of the "written by a client" mark, given the owner and the size.
2. The source is opened and marked: its linkto xattr names the destination
   (set while the destination is made ready: no one reads it before the
   mode says phase 1) and its mode gets S_ISGID|S_ISVTX (GlusterFS's
   migration phase 1).  A
   client writing through distribute sees the mark in the write's reply and
   repeats the write on the destination - after marking the destination
   `trusted.glusterfs.protect.writes`.
3. The data is copied in blocks of 1 MiB (holes skipped with
   SEEK_DATA/SEEK_HOLE; a file without holes up to four blocks at once),
   each write asking the brick to refuse it if a client wrote there
   (`glusterfs.avoid.overwrite`), with a look at the mark between windows
   and at the switch: a client's write to the destination during the copy makes
   the migration give up (EBUSY) rather than overwrite it with older data,
   as GlusterFS does without `force-migration` (with it, the copy goes on).  Writes through the
   distribute translator doing the migration instead wait while a block is
   copied (they take the migration's lock), so they never race a block and
   the migration never has to give up for them.
4. Switch, with those writes held back: with `lock-migration` the POSIX
   locks move (getactivelk/setactivelk; without it a file with locks is
   not migrated); the destination takes the source's xattrs, owner, mode
   and times and is synced (`ensure-durability`); the source becomes a linkto
   file (mode 01000, phase 2) and is truncated; the destination loses its
   linkto xattr; the source's name is removed.  An fd still open on the
   source then sees phase 2 (or ENOENT) and distribute reopens it on the
   destination.

Calls that do not depend on each other go out together (GlusterFS sends
each after the last): a file of one block waits on 12 round trips
(tests/test_rebalance_defrag.py::test_a_file_moves_in_few_round_trips).

On failure the source gets its mode back and loses the linkto xattr, and
the destination is truncated back to an empty linkto file, as GlusterFS's
cleanup leaves them.

Departures: no inodelk/entrylk (the translator takes none, see its
docstring); files with several hard links are left where they are, as a
plain GlusterFS rebalance leaves them (remove-brick's hard-link handling,
gf_defrag_handle_hardlink, is not here); symlinks and special files are
re-created on the destination (migrate_special_files).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat

from collections.abc import Awaitable, Callable

import trio

from glusterpy.fops import (GFID, Fd, FopError, Iatt, Loc, UInt, SET_ATTR_ATIME, SET_ATTR_GID,
                            SET_ATTR_MODE, SET_ATTR_MTIME, SET_ATTR_UID, dev_from_ia)
from glusterpy.keys import (AVOID_OVERWRITE_KEY, GFID_REQ, INTERNAL_FOP, POSIXLK_COUNT,
                            PROTECT_WRITES_KEY)

from glusterpy.xlator import both

from . import layout as dl
from .common import LINKTO_MODE, DirCtx, as_root

#: DHT_REBALANCE_BLKSIZE
BLOCK = 1 << 20
#: blocks of a file without holes read (then written) at once
WINDOW = 4
GF_SEEK_DATA, GF_SEEK_HOLE = 0, 1
PHASE1_BITS = stat.S_ISVTX | stat.S_ISGID


async def _admitted() -> bool:
    return True


@dataclasses.dataclass(eq=False)
class Migration:
    """A file this translator is migrating: writes through it to the file
    take `lock`, which the copy holds for each block and for the switch."""

    src: int
    dst: int
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)
    done: bool = False


class DhtMigrate:
    """The building blocks of rebalance that move files: the volume's commit
    hash, where a file is and belongs, and the migration of one file."""

    # ======================================================================
    # building blocks of rebalance

    async def set_volume_commit_hash(self, value: int) -> None:
        """What rebalance does first (gf_defrag_start_crawl): a new volume
        commit hash in every brick root's trusted.glusterfs.dht.commithash,
        used from now on.  Directories whose layouts carry the old one are
        then looked up everywhere on a miss until `fix_layout(loc, value)`
        settles them, so files not yet moved are still found."""
        raw = int(value & 0xFFFFFFFF).to_bytes(4, "big")
        root = Loc.root()
        with as_root():
            results = await self._each(range(self.count), lambda i: self._wind(
                i, "setxattr", root, {self.commithash_key: raw}, 0, {INTERNAL_FOP: "yes"}))
        for r in results.values():
            if isinstance(r, FopError):
                raise r
        self.vol_commit_hash = value & 0xFFFFFFFF

    async def file_placement(self, loc) -> tuple[int | None, int | None, Iatt]:
        """Where a file is and where it belongs, as the rebalance crawler
        asks before migrating (dht_subvol_get_hashed/_cached after a
        lookup): (hashed subvolume index, data subvolume index, iatt)."""
        eloc, parent = await self._entry(loc)
        reply = await self._lookup_named(dataclasses.replace(eloc, gfid=None), parent, None)
        return self._hashed(parent, eloc.name), self._file_subvol(reply.iatt.gfid), reply.iatt

    async def hashed_subvolume(self, loc) -> int | None:
        """The subvolume a name hashes to by its parent's layout as this
        translator holds it: no call to a brick once the parent is known
        (the rebalance crawl asks it of each entry it lists, right after
        fixing the directory's layout)."""
        eloc, parent = await self._entry(loc)
        return self._hashed(parent, eloc.name)

    async def migrate_file(self, loc, to: int | None = None, *,
                           placement: tuple[int | None, int | None, Iatt] | None = None,
                           admit: Callable[[], Awaitable[bool]] | None = None) -> bool:
        """Move a file's data to its hashed subvolume as dht-rebalance.c's
        dht_migrate_file does, phase by phase (see the module docstring):
        True when it moved, False when it was already there or has several
        hard links (a plain GlusterFS rebalance leaves those).  Writes
        through this translator go on meanwhile; a write from another client
        to the new copy makes the migration give up (EBUSY), as GlusterFS
        without force-migration; fds open on the old copy follow the file.
        A directory is EISDIR.

        `to`, another subvolume than the hashed one, moves the data off
        its hashed subvolume (copy_file_range's colocation of an empty
        clone beside its source): the old copy there stays as the name's
        linkto file, which phase 2 made it.  Only a file whose data is on
        its hashed subvolume can go elsewhere (EINVAL otherwise: the linkto
        file at the hashed one would point at the old place).

        `placement`, (hashed subvolume, data subvolume, iatt) of a file that
        is not a directory - what `file_placement(loc)` answered, or what the
        rebalance crawl read from a brick's listing and the parent's layout -
        spares the lookup through distribute (GlusterFS's crawl looks each
        entry up there first: a hashed brick's miss, a lookup everywhere and
        a linkto file created, three round trips); the lookup of the name
        on the data's brick below still checks that it is the same file and
        that its data is there (not a linkto file: ESTALE).

        `admit`, a check run alongside those lookups (the crawl's free-space
        rule), leaves the file where it is when it answers False."""
        if placement is None:
            loc, ctx = await self._inode(loc)
            if isinstance(ctx, DirCtx):
                raise FopError(errno.EISDIR)
        eloc, parent = await self._entry(loc)
        if placement is not None:
            hashed, src, known = placement
            gfid = known.gfid
        else:
            reply = await self._lookup_named(dataclasses.replace(eloc, gfid=None), parent, None)
            gfid = reply.iatt.gfid
            src = self._file_subvol(gfid)
            hashed = self._hashed(parent, eloc.name)
        if loc.gfid is not None and gfid != loc.gfid:
            raise FopError(errno.ESTALE, f"{loc}: the name now belongs to another file")
        if hashed is None:
            raise FopError(errno.EIO, f"{eloc}: no subvolume in the layout for this name")
        dst = hashed if to is None else to
        if not 0 <= dst < self.count:
            raise FopError(errno.EINVAL, f"{eloc}: no subvolume {dst}")
        if src is None or src == dst:
            return False
        if dst != hashed and src != hashed:
            raise FopError(errno.EINVAL, f"{eloc}: its data is not on its hashed subvolume "
                                         f"{self.names[hashed]}")
        self._require_up(src)
        self._require_up(dst)
        if gfid in self.migrations:
            raise FopError(errno.EBUSY, f"{eloc} is being migrated already")
        named = dataclasses.replace(eloc, gfid=None)
        by_gfid = Loc(path=eloc.path, gfid=gfid)
        with as_root():
            # the name on the destination is looked up alongside (its answer
            # is used only for a regular file that is to move)
            (looked, existing), admitted = await both(
                lambda: both(
                    lambda: self._wind(src, "lookup", named,
                                       {self.linkto_key: UInt(256), POSIXLK_COUNT: UInt(4)}),
                    lambda: self._lookup_missing(dst, named)),
                admit or _admitted)
            st = looked.iatt
            if st.gfid != gfid:
                raise FopError(errno.ESTALE, f"{eloc}: another file took the name")
            if self._is_linkto(st, looked.xdata):
                raise FopError(errno.ESTALE, f"{eloc}: its data left {self.names[src]} "
                                             f"meanwhile")
            if not admitted:
                return False
            if st.nlink > 1:
                self.log.info("%s: not migrated: it has %d hard links", eloc, st.nlink)
                return False
            locks = int((looked.xdata or {}).get(POSIXLK_COUNT, 0) or 0)
            if locks and not self.opts.lock_migration:
                # __is_file_migratable: locks would be left behind (bricks without
                # features/locks report no count: nothing can be locked there)
                self.log.info("%s: not migrated: it has %d POSIX locks and lock-migration is "
                              "off", eloc, locks)
                return False
            if not st.is_reg:
                if dst != hashed:
                    raise FopError(errno.EINVAL, f"{eloc}: only a regular file moves off its "
                                                 f"hashed subvolume")
                await self._migrate_special(src, dst, named, st)
                return True
            mig = Migration(src, dst)
            src_fd = Fd(gfid=gfid, flags=os.O_RDWR)
            dst_fd = Fd(gfid=gfid, flags=os.O_RDWR)
            dst_open = src_open = marked = False

            async def close() -> None:
                """Release the fds still open (once)."""
                nonlocal src_open, dst_open
                fds = {i: fd for i, fd, opened in ((src, src_fd, src_open),
                                                   (dst, dst_fd, dst_open))
                       if opened and self._up[i]}
                src_open = dst_open = False
                await self._each(fds, lambda i: self.children[i].release(fds[i], None))
            try:
                # 1. the destination: the linkto file on the hashed brick
                if existing is not None:
                    if existing.iatt.gfid != gfid or not dl.is_linkto_mode(existing.iatt.mode):
                        raise FopError(errno.EINVAL, f"{eloc}: {self.names[dst]} has another "
                                                     f"file under this name")

                async def open_dst() -> None:
                    nonlocal dst_open
                    if existing is not None:
                        await self._wind(dst, "open", by_gfid, os.O_RDWR, dst_fd, None)
                    else:
                        await self._wind(dst, "create", named,
                                         os.O_RDWR | os.O_CREAT | os.O_EXCL, LINKTO_MODE, 0,
                                         dst_fd, {GFID_REQ: gfid, INTERNAL_FOP: "yes",
                                                  self.linkto_key:
                                                  dl.linkto_value(self.names[src])})
                    dst_open = True
                    # a linkto file found may carry a client's mark of an
                    # earlier attempt; one just made has none
                    if existing is not None:
                        try:
                            await self._wind(dst, "fremovexattr", dst_fd, PROTECT_WRITES_KEY,
                                             None)
                        except FopError as e:
                            if e.errno != errno.ENODATA:
                                raise
                    # owner and size: two changes of one fd that do not
                    # depend on each other
                    await both(
                        lambda: self._wind(dst, "fsetattr", dst_fd,
                                           Iatt(uid=st.uid, gid=st.gid),
                                           SET_ATTR_UID | SET_ATTR_GID, None),
                        lambda: self._wind(dst, "ftruncate", dst_fd, st.size, None))

                async def open_src() -> None:
                    nonlocal src_open, marked
                    await self._wind(src, "open", by_gfid, os.O_RDWR, src_fd, None)
                    src_open = True
                    # phase 1's linkto xattr: nobody looks at it before the
                    # mode below marks the file, so it goes out while the
                    # destination is made ready (GlusterFS sets it after)
                    await self._wind(src, "fsetxattr", src_fd,
                                     {self.linkto_key: dl.linkto_value(self.names[dst])}, 0,
                                     {INTERNAL_FOP: "yes"})
                    marked = True
                # the source is opened while the destination is made ready
                await both(open_dst, open_src)
                # 2. the source, marked: phase 1, once the destination is ready
                async with mig.lock:
                    await self._wind(src, "fsetattr", src_fd,
                                     Iatt(mode=stat.S_IMODE(st.mode) | PHASE1_BITS), SET_ATTR_MODE,
                                     None)
                    self.migrations[gfid] = mig
                # 3. the data
                guard = not self.opts.force_migration
                await self._migrate_copy(mig, src_fd, dst_fd, AVOID_OVERWRITE_KEY,
                                         PROTECT_WRITES_KEY, guard, st)
                # 4. the switch
                async with mig.lock:
                    # the source's final size and attributes, the new copy's
                    # size, the look for a client's write and the source's
                    # xattrs in one round trip; the look counts when nothing
                    # after it changes the new copy's data, so a truncation
                    # to the final size is looked after again: a write that
                    # lands on the old copy after that look is mirrored to
                    # the new one after its size was set, so no appended
                    # data is cut off
                    (final_reply, current_reply), (_, xattrs) = await both(
                        lambda: both(lambda: self._wind(src, "fstat", src_fd, None),
                                     lambda: self._wind(dst, "fstat", dst_fd, None)),
                        lambda: both(
                            lambda: self._check_unwritten(dst, dst_fd, PROTECT_WRITES_KEY)
                            if guard else trio.lowlevel.checkpoint(),
                            lambda: self._copyable_xattrs(src, src_fd)))
                    final, current = final_reply.iatt, current_reply.iatt
                    size = final.size
                    if current.size != size:
                        await self._wind(dst, "ftruncate", dst_fd, size, None)
                        if guard:
                            await self._check_unwritten(dst, dst_fd, PROTECT_WRITES_KEY)
                    if self.opts.lock_migration:
                        await self._carry_locks(src, dst, by_gfid)
                    if xattrs:
                        await self._wind(dst, "fsetxattr", dst_fd, xattrs, 0, None)
                    mode = stat.S_IMODE(final.mode) & ~PHASE1_BITS | \
                        (stat.S_IMODE(st.mode) & PHASE1_BITS)
                    # owner, mode and times in one fsetattr (GlusterFS sends two):
                    # a brick applies the owner and mode before the times; it
                    # goes out with the fsync, which GlusterFS sends before
                    # it (so the attributes are no less durable than there)
                    await both(
                        lambda: self._wind(dst, "fsync", dst_fd, 0, {"last-fsync": UInt(1)})
                        if self.opts.ensure_durability else trio.lowlevel.checkpoint(),
                        lambda: self._wind(dst, "fsetattr", dst_fd,
                                           Iatt(uid=final.uid, gid=final.gid, mode=mode,
                                                atime=final.atime, atime_nsec=final.atime_nsec,
                                                mtime=final.mtime,
                                                mtime_nsec=final.mtime_nsec),
                                           SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_MODE |
                                           SET_ATTR_ATIME | SET_ATTR_MTIME, None))
                    await self._wind(src, "fsetattr", src_fd, Iatt(mode=stat.S_ISVTX),
                                     SET_ATTR_MODE, None)
                    mig.done = True
                    self.migrations.pop(gfid, None)
                    self._remember_file(gfid, dst)
                    # phase 2 is set: the old copy's data goes, the new copy
                    # stops being a linkto file and the name's owner on the
                    # old brick is looked at (for the unlink), side by side
                    _, (_, now) = await both(
                        lambda: self._truncate_source(src, src_fd, eloc),
                        lambda: both(
                            lambda: self._wind(dst, "fremovexattr", dst_fd, self.linkto_key,
                                               None),
                            lambda: self._stat_source(src, named, eloc)))

                async def drop_old_name() -> None:
                    if now is None or now.gfid != gfid or src == hashed:
                        return
                    # moved off the hashed subvolume: the old copy is the linkto file
                    try:
                        await self._wind(src, "unlink", named, 0, {INTERNAL_FOP: "yes"})
                    except FopError as e:
                        if e.errno not in (errno.ENOENT, errno.ESTALE):
                            self.log.warning("%s: migrated, but the old copy on %s stays: %s",
                                             eloc, self.names[src], e)
                # the name goes while the fds are released (an open fd does
                # not keep a name, nor the other way round)
                await both(drop_old_name, close)
                self.log.info("%s: migrated from %s to %s", eloc, self.names[src], self.names[dst])
                return True
            except BaseException:
                with trio.CancelScope(shield=True):
                    self.migrations.pop(gfid, None)
                    if not mig.done:
                        await self._migrate_undo(mig, src_fd, dst_fd, st, marked, dst_open)
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await close()

    # ======================================================================
    # helpers: migration

    async def _truncate_source(self, src: int, src_fd: Fd, eloc: Loc) -> None:
        try:
            await self._wind(src, "ftruncate", src_fd, 0, None)
        except FopError as e:
            self.log.warning("%s: source on %s not truncated: %s", eloc, self.names[src], e)

    async def _stat_source(self, src: int, named: Loc, eloc: Loc) -> Iatt | None:
        """The name on the old brick after the switch (None when it is gone
        or cannot be looked at: then it is not unlinked)."""
        try:
            return (await self._wind(src, "lookup", named, None)).iatt
        except FopError as e:
            if e.errno not in (errno.ENOENT, errno.ESTALE):
                self.log.warning("%s: migrated, but the old copy on %s stays: %s", eloc,
                                 self.names[src], e)
            return None

    async def _migrate_copy(self, mig: Migration, src_fd: Fd, dst_fd: Fd, avoid_key: str,
                            protect_key: str, guard: bool, st: Iatt | None = None) -> None:
        """__dht_rebalance_migrate_data: the data segments, each window of
        blocks under the migration's lock; with `guard` (force-migration off)
        each write asks not to overwrite a client's and the copy gives up
        when a client wrote.

        A file with no holes when it was looked up (`st`: as many blocks as
        its size needs) is read straight through, without SEEK_DATA and
        SEEK_HOLE (GlusterFS seeks only in a file with holes, too), up to
        `WINDOW` blocks at a time: their reads go out together, then their
        writes (GlusterFS copies a block at a time, a round trip each way);
        the copy ends at the first short read: the source is marked already,
        so a client's write that lands after that read is repeated on the new
        copy by the client.  The look for a client's write is made between
        windows, to give up early, not after the last: the switch looks
        once more before anything depends on it."""
        dense = st is not None and st.blocks * 512 >= st.size
        offset = 0
        while True:
            async with mig.lock:
                if dense:
                    # the blocks the size asks for (one at least: the file
                    # may have grown), no more than a window
                    left = (st.size - offset + BLOCK - 1) // BLOCK
                    spans = [(offset + k * BLOCK, BLOCK)
                             for k in range(min(max(left, 1), WINDOW))]
                else:
                    start = await self._migrate_seek(mig.src, src_fd, offset, GF_SEEK_DATA)
                    if start is None:
                        return
                    end = await self._migrate_seek(mig.src, src_fd, start, GF_SEEK_HOLE)
                    spans = [(start, min(BLOCK, end - start) if end is not None and
                              end > start else BLOCK)]
                datas = await self._each(range(len(spans)), lambda k: self._wind(
                    mig.src, "readv", src_fd, spans[k][1], spans[k][0], 0, None))
                blocks = []
                for k, (start, size) in enumerate(spans):
                    r = datas[k]
                    if isinstance(r, BaseException):
                        raise r
                    if len(r.data):
                        blocks.append((start, r.data))
                    if len(r.data) < size:
                        break       # the end: what follows a short read is not copied
                if not blocks:
                    return
                written = await self._each(range(len(blocks)), lambda k: self._wind(
                    mig.dst, "writev", dst_fd, blocks[k][1], blocks[k][0], 0,
                    {avoid_key: UInt(1)} if guard else None))
                for r in written.values():
                    if isinstance(r, BaseException):
                        raise r
                start, data = blocks[-1]
                offset = start + len(data)
                more = len(blocks) == len(spans) and len(data) == spans[-1][1]
                if not more and (dense or len(data) < spans[-1][1]):
                    return
                if guard:
                    await self._check_unwritten(mig.dst, dst_fd, protect_key)
            await trio.lowlevel.checkpoint()

    async def _migrate_seek(self, i: int, fd: Fd, offset: int, what: int) -> int | None:
        """SEEK_DATA/SEEK_HOLE; None past the last data.  A brick that cannot
        seek is read as all data."""
        try:
            return (await self._wind(i, "seek", fd, offset, what, None)).offset
        except FopError as e:
            if e.errno == errno.ENXIO:
                return None
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return offset if what == GF_SEEK_DATA else offset + BLOCK
            raise

    async def _lookup_missing(self, i: int, loc: Loc):
        """The name's lookup on subvolume `i`, None when it is not there."""
        try:
            return await self._wind(i, "lookup", loc, {self.linkto_key: UInt(256)})
        except FopError as e:
            if e.errno not in (errno.ENOENT, errno.ESTALE):
                raise
            return None

    async def _carry_locks(self, src: int, dst: int, loc: Loc) -> None:
        """lock-migration: the file's POSIX locks go with it (getactivelk on
        the source, setactivelk on the destination).  Bricks that keep no
        locks (no features/locks) have none to carry."""
        try:
            active = (await self._wind(src, "getactivelk", loc, None)).locks
        except FopError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                return
            raise
        if active:
            await self._wind(dst, "setactivelk", loc, active, None)

    async def _check_unwritten(self, dst: int, dst_fd: Fd, protect_key: str) -> None:
        """Give up when a client wrote to the new copy behind our back."""
        try:
            await self._wind(dst, "fgetxattr", dst_fd, protect_key, None)
        except FopError as e:
            if e.errno == errno.ENODATA:
                return
            raise
        raise FopError(errno.EBUSY, "a client wrote to the file while it was migrated")

    async def _copyable_xattrs(self, src: int, src_fd: Fd) -> dict:
        """The source's xattrs for the destination, without distribute's own
        and the migration marks."""
        reply = await self._wind(src, "fgetxattr", src_fd, None, None)
        skip = {self.linkto_key, self.layout_key, self.mds_key, PROTECT_WRITES_KEY}
        return {k: v for k, v in reply.dict.items() if k not in skip}

    async def _migrate_undo(self, mig: Migration, src_fd: Fd, dst_fd: Fd, st: Iatt,
                            marked: bool, dst_open: bool) -> None:
        """GlusterFS's clean_src/clean_dst: the source as it was, the
        destination an empty linkto file again."""
        if marked:
            try:
                # the mode as it is now (a client may have changed it), unmarked
                now = (await self._wind(mig.src, "fstat", src_fd, None)).iatt
                mode = stat.S_IMODE(now.mode) & ~PHASE1_BITS | (stat.S_IMODE(st.mode) & PHASE1_BITS)
                await self._wind(mig.src, "fsetattr", src_fd, Iatt(mode=mode), SET_ATTR_MODE, None)
                await self._wind(mig.src, "fremovexattr", src_fd, self.linkto_key, None)
            except FopError as e:
                self.log.error("migration undo: source left marked: %s", e)
        if dst_open:
            try:
                await self._wind(mig.dst, "ftruncate", dst_fd, 0, None)
            except FopError as e:
                self.log.warning("migration undo: destination not emptied: %s", e)

    async def _migrate_special(self, src: int, dst: int, named: Loc, st: Iatt) -> None:
        """migrate_special_files: a symlink, fifo, socket or device is made
        again on the destination with the same gfid, owner and times; then the
        source goes."""
        try:
            existing = await self._wind(dst, "lookup", named, {self.linkto_key: UInt(256)})
        except FopError as e:
            if e.errno not in (errno.ENOENT, errno.ESTALE):
                raise
        else:
            if existing.iatt.gfid != st.gfid or not dl.is_linkto_mode(existing.iatt.mode):
                raise FopError(errno.EINVAL, f"{named}: the destination has another file")
            await self._wind(dst, "unlink", named, 0, {INTERNAL_FOP: "yes"})
        xd = {GFID_REQ: GFID(st.gfid), INTERNAL_FOP: "yes"}
        if st.is_link:
            target = (await self._wind(src, "readlink", Loc(gfid=st.gfid), 4096, None)).path
            await self._wind(dst, "symlink", target, named, 0, xd)
        else:
            await self._wind(dst, "mknod", named, st.mode, dev_from_ia(st.rdev), 0, xd)
        try:
            await self._wind(dst, "setattr", Loc(gfid=st.gfid), dataclasses.replace(st),
                             SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_ATIME | SET_ATTR_MTIME |
                            (0 if st.is_link else SET_ATTR_MODE), None)
        except FopError as e:
            self.log.warning("%s: attributes not copied to %s: %s", named, self.names[dst], e)
        await self._wind(src, "unlink", named, 0, {INTERNAL_FOP: "yes"})
        self._remember_file(st.gfid, dst)

