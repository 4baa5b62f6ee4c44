"""cluster/distribute's lookup: a name on its hashed subvolume, a directory
everywhere with its layout merged (and healed, selfheal.py), a miss looked
up everywhere, a gfid without a name discovered (dht-common.c's dht_lookup,
dht_lookup_everywhere, dht_lookup_directory, dht_do_discover)."""

from __future__ import annotations

import dataclasses
import errno
import stat

from glusterpy.fops import GFID, ROOT_GFID, FopError, Iatt, Loc, LookupReply, UInt
from glusterpy.keys import GFID_REQ, OPEN_FD_COUNT

from . import layout as dl
from .common import (MISSING, DirCtx, fixed_dir, is_root, merge_dir_iatts, open_fds, root_loc,
                     strip_phase1)
from .layout import Layout


class DhtLookup:
    """The lookup fop and its helpers."""

    async def lookup(self, loc, xdata=None):
        """dht_lookup: a named lookup on the hashed subvolume (then the
        directory everywhere, a linkto's target, or everywhere on a miss); a
        nameless one on every subvolume."""
        if is_root(loc):
            return await self._lookup_dir(root_loc(loc), xdata, hashed=None)
        if loc.name is None and loc.pargfid is None:
            if loc.gfid is not None:
                return await self._discover(loc, xdata)
            if not (loc.path or "").strip("/"):
                raise FopError(errno.EINVAL, "a loc needs a gfid, a parent and a name, or a path")
        eloc, parent = await self._entry(loc)
        return await self._lookup_named(eloc, parent, xdata)

    # ======================================================================
    # helpers: lookup

    def _lookup_req(self, xdata: dict | None, root: bool = False) -> dict:
        """What every lookup asks the bricks for (dht_set_file_xattr_req,
        dht_set_dir_xattr_req); the caller's gfid-req is kept aside."""
        req = {k: v for k, v in (xdata or {}).items() if k != GFID_REQ}
        req[self.layout_key] = UInt(16)
        req[self.mds_key] = UInt(4)
        req[self.linkto_key] = UInt(256)
        req[OPEN_FD_COUNT] = UInt(4)
        if root:
            req[self.commithash_key] = UInt(4)
        return req

    def _visible_xdata(self, reply_xdata: dict | None, asked: dict | None) -> dict | None:
        """Reply xdata without the keys distribute asked for itself."""
        if not reply_xdata:
            return reply_xdata
        asked = asked or {}
        own = (self.layout_key, self.mds_key, self.linkto_key, OPEN_FD_COUNT,
               self.commithash_key)
        out = {k: v for k, v in reply_xdata.items() if k not in own or k in asked}
        return out or None

    def _should_lookup_everywhere(self, parent: DirCtx) -> bool:
        """dht_should_lookup_everywhere."""
        if self.opts.lookup_optimize:
            return parent.layout.commit_hash != self.vol_commit_hash
        mode = self.opts.lookup_unhashed
        if mode == "auto":
            return parent.search_unhashed > 0
        return mode in ("on", "yes", "enable", "1")

    async def _lookup_named(self, loc: Loc, parent: DirCtx, xdata) -> LookupReply:
        """dht_do_fresh_lookup and its callbacks."""
        hashed = self._hashed(parent, loc.name)
        req = self._lookup_req(xdata)
        gfid_req = (xdata or {}).get(GFID_REQ)
        if hashed is None:
            # no range holds the name: a directory, if anything (dht_lookup_dir)
            return await self._lookup_dir(loc, xdata, hashed=None, gfid=gfid_req)
        try:
            reply = await self._wind(hashed, "lookup", loc, req)
        except FopError as e:
            if e.errno in MISSING:
                if self.count == 1 or not self._should_lookup_everywhere(parent):
                    raise FopError(errno.ENOENT) from None
                return await self._lookup_everywhere(loc, parent, hashed, xdata)
            if e.errno in (errno.ENOTCONN, errno.ENODATA):
                return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=gfid_req)
            raise
        if reply.iatt.is_dir:
            # the hashed brick's answer serves as its part of the directory
            # lookup: asked again it would say the same (the gfid-req the
            # directory lookup adds heals only a brick without a gfid, and
            # this one has it) - one RPC fewer per directory lookup, the
            # only one with a single subvolume (GlusterFS's revalidate of a
            # known directory also sends one per subvolume)
            return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=reply.iatt.gfid,
                                          known=None if reply.iatt.gfid.is_null
                                          else {hashed: reply})
        if not self._is_linkto(reply.iatt, reply.xdata):
            self._remember_file(reply.iatt.gfid, hashed)
            return self._file_reply(reply, xdata)
        target = self._linkto_subvol(reply.xdata)
        if target is None:
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        try:
            data = await self._wind(target, "lookup", loc, req)
        except FopError as e:
            if e.errno == errno.ENOTCONN:
                raise
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        if data.iatt.is_dir or self._is_linkto(data.iatt, data.xdata) or \
                data.iatt.gfid != reply.iatt.gfid:
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        if data.iatt.nlink == 1 and self.opts.unhashed_sticky_bit:
            data.iatt.mode |= stat.S_ISVTX
        self._remember_file(data.iatt.gfid, target)
        return self._file_reply(data, xdata)

    def _file_reply(self, reply: LookupReply, xdata) -> LookupReply:
        return LookupReply(strip_phase1(reply.iatt), fixed_dir(reply.postparent),
                           xdata=self._visible_xdata(reply.xdata, xdata))

    async def _lookup_everywhere(self, loc: Loc, parent: DirCtx | None, hashed: int | None,
                                 xdata) -> LookupReply:
        """dht_lookup_everywhere(_done): ask every brick; a directory goes to
        the directory lookup; the data file found gets a linkto file on the
        hashed brick; stale linkto files are removed."""
        req = self._lookup_req(xdata)
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "lookup", loc, req))
        files, dirs, linktos = [], [], []
        gfid_missing = False
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                gfid_missing |= r.errno == errno.ENODATA
                continue
            if self._is_linkto(r.iatt, r.xdata):
                linktos.append((i, r))
            elif r.iatt.is_dir:
                dirs.append((i, r))
            else:
                files.append((i, r))
        if files and dirs:
            self.log.error("%s exists as a file on one subvolume and as a directory on "
                           "another; fix it by hand", loc)
            raise FopError(errno.EIO)
        if dirs or (gfid_missing and not files):
            gfid = dirs[0][1].iatt.gfid if dirs else (xdata or {}).get(GFID_REQ)
            if not dirs and gfid is None:
                raise FopError(errno.ENODATA)
            return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=gfid, everywhere=False)
        cached, data = (files[0] if files else (None, None))
        if len(files) > 1:
            self.log.warning("%s: data files on several subvolumes (%s); using %s", loc,
                             ", ".join(self.names[i] for i, _ in files), self.names[cached])
        # linkto files on bricks other than the hashed one are stale
        for i, r in linktos:
            if i == hashed:
                continue
            if open_fds(r.xdata):
                continue
            await self._unlink_stale_linkto(i, loc)
        on_hashed = next((r for i, r in linktos if i == hashed), None)
        if data is None:
            if on_hashed is not None and not open_fds(on_hashed.xdata):
                await self._unlink_stale_linkto(hashed, loc)
            raise FopError(errno.ENOENT)
        self._remember_file(data.iatt.gfid, cached)
        if hashed is not None and hashed != cached and self._up[hashed]:
            points_to = self._linkto_subvol(on_hashed.xdata) if on_hashed is not None else None
            if on_hashed is not None and points_to == cached:
                if on_hashed.iatt.gfid != data.iatt.gfid:
                    raise FopError(errno.ESTALE)
            else:
                if on_hashed is not None:
                    if open_fds(on_hashed.xdata):
                        return self._file_reply(data, xdata)
                    await self._unlink_stale_linkto(hashed, loc)
                try:
                    await self._create_linkto(hashed, cached, loc, data.iatt.gfid,
                                              data_iatt=data.iatt)
                except FopError as e:
                    self.log.info("%s: linkto file on %s not created: %s", loc,
                                  self.names[hashed], e)
        return self._file_reply(data, xdata)

    async def _discover(self, loc: Loc, xdata) -> LookupReply:
        """dht_do_discover: a gfid without a name, looked up everywhere."""
        req = self._lookup_req(xdata)
        ups = [i for i in range(self.count) if self._up[i]]
        nameless = Loc(path=loc.path, gfid=loc.gfid)
        results = await self._each(ups, lambda i: self._wind(i, "lookup", nameless, req))
        found = [(i, r) for i, r in results.items() if not isinstance(r, FopError)]
        if not found:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            missing = [e for e in errors if e.errno in MISSING]
            raise (missing[0] if missing else errors[0]) if errors else FopError(errno.ENOTCONN)
        found.sort()
        if any(r.iatt.is_dir for _, r in found):
            layout = Layout([], spread=self._spread())
            iatts = []
            mds = None
            for i in range(self.count):
                r = results.get(i)
                if r is None:
                    layout.merge(i, self.names[i], errno.ENOTCONN, None)
                elif isinstance(r, FopError):
                    layout.merge(i, self.names[i], r.errno, None)
                else:
                    self._merge_layout(layout, i, r)
                    iatts.append(r.iatt)
                    if r.xdata and self.mds_key in r.xdata:
                        mds = i
            self._remember_dir(loc.gfid, layout, mds)
            first = found[0][1]
            return LookupReply(merge_dir_iatts(iatts), None,
                               xdata=self._visible_xdata(first.xdata, xdata))
        data = [(i, r) for i, r in found if not self._is_linkto(r.iatt, r.xdata)]
        if not data:
            raise FopError(errno.ENOENT, f"{loc}: only linkto files were found")
        i, r = data[0]
        self._remember_file(r.iatt.gfid, i)
        return LookupReply(strip_phase1(r.iatt), None,
                           xdata=self._visible_xdata(r.xdata, xdata))

    def _merge_layout(self, layout: Layout, i: int, reply) -> None:
        raw = reply.xdata.get(self.layout_key) if reply.xdata else None
        try:
            layout.merge(i, self.names[i], 0, bytes(raw) if raw is not None else None)
        except ValueError as e:
            self.log.warning("subvolume %s: bad layout xattr: %s", self.names[i], e)
            layout.merge(i, self.names[i], errno.EINVAL, None)

    async def _lookup_dir(self, loc: Loc, xdata, hashed: int | None, gfid=None,
                          everywhere: bool = True,
                          known: dict[int, LookupReply] | None = None) -> LookupReply:
        """dht_lookup_directory + dht_lookup_dir_cbk: the directory on every
        brick (but those whose answer is `known`: a non-root lookup's reply
        showing the directory with its gfid), its layout merged and, when it
        needs it, healed."""
        root = loc.gfid == ROOT_GFID or is_root(loc)
        req = self._lookup_req(xdata, root=root)
        if gfid is None:
            gfid = loc.gfid
        if gfid is not None:
            req[GFID_REQ] = GFID(gfid)     # heals a brick's missing gfid
        if root or not known:
            known = {}
        results = await self._each([i for i in range(self.count) if i not in known],
                                   lambda i: self._wind(i, "lookup", loc, req))
        results.update(known)
        layout = Layout([], spread=self._spread())
        found: dict[int, LookupReply] = {}
        need_everywhere = False
        for i in range(self.count):
            r = results[i]
            if isinstance(r, FopError):
                layout.merge(i, self.names[i], r.errno, None)
                need_everywhere |= r.errno == errno.ENODATA
                continue
            if not r.iatt.is_dir:
                layout.merge(i, self.names[i], 0, None)
                need_everywhere = True
                continue
            self._merge_layout(layout, i, r)
            found[i] = r
        if need_everywhere and everywhere and not root and loc.name is not None:
            parent = self.itable.ctx(self, loc.pargfid)
            return await self._lookup_everywhere(
                loc, parent if isinstance(parent, DirCtx) else None, hashed, xdata)
        if not found:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            missing = [e for e in errors if e.errno in MISSING]
            if missing and len(missing) == len(errors):
                raise FopError(errno.ENOENT)
            raise next((e for e in errors if e.errno not in MISSING), FopError(errno.ENOENT))
        order = sorted(found)
        dir_gfid = found[order[0]].iatt.gfid
        for i in order[1:]:
            if found[i].iatt.gfid != dir_gfid:
                self.log.warning("%s: gfid differs on %s (%s, not %s)", loc, self.names[i],
                                 found[i].iatt.gfid, dir_gfid)
        if root and self.opts.commit_hash is None:
            for i in order:
                raw = (found[i].xdata or {}).get(self.commithash_key)
                if raw is not None and len(bytes(raw)) >= 4:
                    self.vol_commit_hash = int.from_bytes(bytes(raw)[:4], "big")
                    break
        mds = next((i for i in order if found[i].xdata and self.mds_key in found[i].xdata),
                   None)
        iatts = [found[i].iatt for i in order]
        source = self._attr_source(found, order, mds, root)
        need_attrheal = any(_owner_perm(ia) != _owner_perm(iatts[0]) for ia in iatts[1:])
        need_mds = not root and mds is None and self.count > 1
        loc = dataclasses.replace(loc, gfid=dir_gfid)
        if need_attrheal or need_mds or dl.needs_heal(layout):
            layout = await self._selfheal_dir(loc, layout, found[source].iatt, found,
                                              need_attrheal, hashed if need_mds else None)
            if need_mds and hashed is not None and self._up[hashed]:
                mds = hashed
        self._remember_dir(dir_gfid, layout, mds)
        stbuf = merge_dir_iatts(iatts)
        postparents = [found[i].postparent for i in order if found[i].postparent is not None]
        extra: dict = {}
        for i in ([mds] if mds is not None else []) + order:
            for k, v in (found[i].xdata or {}).items():
                extra.setdefault(k, v)
        return LookupReply(stbuf, fixed_dir(merge_dir_iatts(postparents))
                           if postparents else None,
                           xdata=self._visible_xdata(extra, xdata))

    def _attr_source(self, found, order, mds, root) -> int:
        """Whose owner and mode a heal spreads: for the root the brick with
        a layout and the latest ctime, otherwise the mds subvolume."""
        if root:
            with_layout = [i for i in order if (found[i].xdata or {}).get(self.layout_key)]
            pool = with_layout or order
            return max(pool, key=lambda i: (found[i].iatt.ctime, found[i].iatt.ctime_nsec,
                                            -i))
        return mds if mds is not None else order[0]


def _owner_perm(iatt: Iatt) -> tuple[int, int, int]:
    return iatt.uid, iatt.gid, stat.S_IMODE(iatt.mode)
