"""cluster/distribute's directory self-heal and fix-layout: a directory
created where it is missing, new ranges for a layout with holes or
overlaps, owner and mode made equal, the mds xattr set; and a fix-layout's
new ranges, swapped to keep files in place (dht-selfheal.c's
dht_selfheal_directory, dht_selfheal_new_directory,
dht_fix_layout_of_directory)."""

from __future__ import annotations

import errno
import stat

from glusterpy.fops import FopError, Iatt, Loc, LookupReply
from glusterpy.keys import GFID_REQ, INTERNAL_FOP

from . import layout as dl
from .common import HEAL_ATTR_VALID, HEALED_XATTR_PREFIXES, MISSING, DirCtx, as_root
from .layout import Layout


class DhtSelfheal:
    """Directory heal, layouts written, fix-layout."""

    # ======================================================================
    # helpers: directory self-heal

    async def _selfheal_dir(self, loc: Loc, layout: Layout, stbuf: Iatt,
                            found: dict[int, LookupReply], need_attrheal: bool,
                            mark_mds: int | None) -> Layout:
        """dht_selfheal_directory: create the directory where it is missing,
        give the layout new ranges if it has holes or overlaps, make owner
        and mode equal, mark the mds subvolume.  Nothing is fixed while a
        brick is down or answered an unexpected error."""
        a = dl.anomalies(layout)
        if a.down or a.misc:
            self.log.warning("%s: not healed: %d subvolume(s) down, %d with errors", loc,
                             a.down, a.misc)
            return layout
        fix_ranges = bool(a.holes or a.overlaps)
        missing = [e for e in layout.entries if e.err in MISSING]
        if fix_ranges:
            layout.commit_hash = dl.LAYOUT_HASH_INVALID
            await self._refresh_du()
            self._new_layout(layout, loc, loc.gfid)
        created: list[int] = []
        if missing:
            xattrs = await self._healable_xattrs(loc, found)
            mode = stat.S_IMODE(stbuf.mode)
            mkdir_x = {**xattrs, GFID_REQ: loc.gfid}
            with as_root():
                results = await self._each([e.index for e in missing], lambda i: self._wind(
                    i, "mkdir", loc, mode, 0, mkdir_x))
            for e in missing:
                r = results[e.index]
                if isinstance(r, FopError) and r.errno != errno.EEXIST:
                    self.log.warning("%s: could not create it on %s: %s", loc,
                                     self.names[e.index], r)
                    e.err = r.errno
                else:
                    e.err = -1
                    created.append(e.index)
        if created or need_attrheal:
            targets = created if not need_attrheal else \
                [e.index for e in layout.entries if e.err in (0, -1)]
            with as_root():
                results = await self._each(targets, lambda i: self._wind(
                    i, "setattr", loc, stbuf, HEAL_ATTR_VALID, None))
            for i, r in results.items():
                if isinstance(r, FopError):
                    self.log.warning("%s: attributes not healed on %s: %s", loc,
                                     self.names[i], r)
        write = [e.index for e in layout.entries if e.err == -1]
        if write:
            await self._write_layout(loc, layout, write, idle_commit=0)
        if mark_mds is not None and self._up[mark_mds]:
            try:
                with as_root():
                    await self._wind(mark_mds, "setxattr", loc, {self.mds_key: bytes(4)}, 0,
                                     {INTERNAL_FOP: "yes"})
            except FopError as e:
                self.log.warning("%s: mds xattr not set on %s: %s", loc,
                                 self.names[mark_mds], e)
        return layout

    async def _healable_xattrs(self, loc: Loc, found: dict[int, LookupReply]) -> dict:
        """The user xattrs (and ACLs) a re-created directory gets, from the
        mds subvolume or the first brick that has the directory."""
        order = sorted(found, key=lambda i: (not (found[i].xdata or {}).get(self.mds_key), i))
        for i in order:
            try:
                reply = await self._wind(i, "getxattr", loc, None, None)
            except FopError:
                continue
            return {k: v for k, v in reply.dict.items() if k.startswith(HEALED_XATTR_PREFIXES)}
        return {}

    def _new_layout(self, layout: Layout, loc: Loc, gfid) -> Layout:
        return dl.new_directory_layout(layout, self._path(loc), self.hasher,
                                       chunks=self._chunks(),
                                       weighted=self.opts.weighted_rebalance,
                                       gfid_text=self._gfid_text(gfid),
                                       decommissioned=self.decommissioned)

    async def _write_layout(self, loc: Loc, layout: Layout, indexes: list[int],
                            idle_commit: int, must: bool = False) -> None:
        """Write each listed brick's part of the layout (0-0 for a brick
        without a range); a brick that refuses keeps err set.  With `must`,
        the first failure is raised."""
        indexes = [i for i in indexes if self._up[i]]
        with as_root():
            results = await self._each(indexes, lambda i: self._wind(
                i, "setxattr", loc, {self.layout_key: layout.disk(i, idle_commit)}, 0,
                {INTERNAL_FOP: "yes"}))
        for i in indexes:
            e = layout.entry(i)
            r = results[i]
            if isinstance(r, FopError):
                self.log.warning("%s: layout not written on %s: %s", loc, self.names[i], r)
                if e is not None:
                    e.err = r.errno
                if must:
                    raise r
            elif e is not None:
                e.err = 0

    async def _restore_dir(self, loc: Loc, ctx: DirCtx) -> None:
        """dht_selfheal_restore after a partial rmdir: a lookup re-creates the
        directory where it went."""
        try:
            await self._lookup_dir(loc, None, hashed=None, gfid=loc.gfid)
        except FopError as e:
            self.log.warning("%s: not restored after a failed rmdir: %s", loc, e)

    # ======================================================================
    # fix-layout (a building block of rebalance)

    async def fix_layout(self, loc, new_commit_hash: int | None = None,
                         subvolumes=None) -> Layout:
        """Give a directory the layout a fix-layout gives it
        (dht_fix_layout_of_directory) and write it to every brick: ranges
        for every brick that is not decommissioned, swapped to keep as much
        of the old assignment as possible; the directory keeps its commit
        hash - unless that is the volume's, which would let lookup-optimize
        trust the new ranges before a file moved: then it becomes 1 (a
        departure; GlusterFS's rebalance changes the volume's commit hash
        first, see set_volume_commit_hash).  Missing directories are
        created first.  ENOTCONN when a brick is down (GlusterFS then
        leaves the layout alone).

        With `new_commit_hash` (GlusterFS's "new-commit-hash", sent by
        rebalance once a directory's files are where its layout wants them)
        only the layout's commit hash changes (dht_update_commit_hash_for_layout),
        on the bricks of `subvolumes` (indexes; all when None) - a rebalance
        process settles its node's bricks only, and the merged layout is
        trusted once every node has settled its own."""
        loc, ctx = await self._inode(loc)
        if not isinstance(ctx, DirCtx):
            raise FopError(errno.ENOTDIR)
        await self._lookup_dir(loc, None, hashed=None)      # heals missing directories
        ctx = self.itable.ctx(self, loc.gfid)
        if not isinstance(ctx, DirCtx):
            raise FopError(errno.ENOENT)
        for i in range(self.count):
            self._require_up(i)
        if new_commit_hash is not None:
            value = new_commit_hash & 0xFFFFFFFF
            which = list(range(self.count)) if subvolumes is None else sorted(set(subvolumes))
            new = ctx.layout.copy()
            for e in new.entries:
                if e.index in which:
                    e.commit_hash = value
            # as Layout.merge: one commit hash for all, or none to trust
            new.commit_hash = value if all(e.commit_hash == value for e in new.entries) \
                else dl.LAYOUT_HASH_INVALID
            await self._write_layout(loc, new, which, idle_commit=value, must=True)
            self._remember_dir(loc.gfid, new, ctx.mds)
            return new
        await self._refresh_du()
        old = ctx.layout.copy()
        if old.commit_hash == self.vol_commit_hash:
            # lookup-optimize would trust the new ranges before a file moved:
            # keep misses looking everywhere until the directory is settled
            old.commit_hash = dl.LAYOUT_HASH_INVALID
        new = dl.fix_layout(old, self._path(loc), self.hasher, chunks=self._chunks(),
                            weighted=self.opts.weighted_rebalance,
                            gfid_text=self._gfid_text(loc.gfid),
                            decommissioned=self.decommissioned)
        if new is None:
            raise FopError(errno.ENOTCONN, "a brick is down: layout left alone")
        if new is old:
            return old
        if _ranges(new) == _ranges(ctx.layout) and not any(e.err for e in ctx.layout.entries):
            # already fixed (by another node's rebalance, or earlier in this
            # one): rewriting it would undo commit hashes settled since
            return ctx.layout
        await self._write_layout(loc, new, list(range(self.count)),
                                 idle_commit=new.commit_hash, must=True)
        self._remember_dir(loc.gfid, new, ctx.mds)
        return new


def _ranges(layout: Layout) -> list[tuple[int, int, int]]:
    return sorted((e.index, e.start, e.stop) for e in layout.entries)
