"""cluster/distribute's linkto files: recognising them, creating one on a
name's hashed subvolume naming the data's, removing stale ones
(dht-linkfile.c, check_is_linkfile)."""

from __future__ import annotations

import dataclasses
import errno

from glusterpy import fops
from glusterpy.fops import GFID, FopError, Iatt, Loc, UInt, SET_ATTR_GID, SET_ATTR_UID
from glusterpy.keys import (GFID_REQ, INTERNAL_FOP, OPEN_FD_COUNT, SKIP_NON_LINKTO_UNLINK,
                            SKIP_OPEN_FD_UNLINK)

from . import layout as dl
from .common import LINKTO_MODE, MISSING, as_root, open_fds


class DhtLinkfile:
    """Linkto files."""

    # ======================================================================
    # helpers: linkto files

    def _is_linkto(self, iatt: Iatt, xdata: dict | None) -> bool:
        """check_is_linkfile: mode 01000 and the linkto xattr."""
        return dl.is_linkto_mode(iatt.mode) and bool(xdata) and self.linkto_key in xdata

    def _linkto_subvol(self, xdata: dict | None) -> int | None:
        target = dl.linkto_target(xdata.get(self.linkto_key) if xdata else None)
        if target is None or target not in self.names:
            return None
        return self.names.index(target)

    async def _create_linkto(self, where: int, target: int, loc: Loc, gfid,
                             data_iatt: Iatt | None = None, accept_existing: bool = True) -> None:
        """dht_linkfile_create: a linkto file for `loc` on `where` naming
        `target`, with the file's gfid, made as root; then owner as the data
        file's (dht_linkfile_attr_heal).  With `accept_existing`, an existing
        linkto file for the same gfid and target is fine, a stale one is
        replaced; without, EEXIST stands."""
        xd = {GFID_REQ: GFID(gfid), INTERNAL_FOP: "yes",
              self.linkto_key: dl.linkto_value(self.names[target])}
        try:
            with as_root():
                reply = await self._wind(where, "mknod", loc, LINKTO_MODE, 0, 0, xd)
        except FopError as e:
            if e.errno != errno.EEXIST or not accept_existing:
                raise
            existing = await self._wind(where, "lookup", dataclasses.replace(loc, gfid=None),
                                        {self.linkto_key: UInt(256), OPEN_FD_COUNT: UInt(4)})
            if not self._is_linkto(existing.iatt, existing.xdata):
                raise
            if existing.iatt.gfid == gfid and self._linkto_subvol(existing.xdata) == target:
                return
            if open_fds(existing.xdata):
                raise
            await self._unlink_stale_linkto(where, loc)
            with as_root():
                reply = await self._wind(where, "mknod", loc, LINKTO_MODE, 0, 0, xd)
        owner = data_iatt if data_iatt is not None else self._owner_hint()
        if owner is not None and (reply.iatt.uid, reply.iatt.gid) != (owner.uid, owner.gid):
            try:
                with as_root():
                    await self._wind(where, "setattr", Loc(gfid=reply.iatt.gfid),
                                     Iatt(uid=owner.uid, gid=owner.gid),
                                     SET_ATTR_UID | SET_ATTR_GID, None)
            except FopError as e:
                self.log.debug("%s: linkto owner not set on %s: %s", loc, self.names[where], e)

    def _owner_hint(self) -> Iatt | None:
        """A new file is owned by its caller: so is its linkto file."""
        who = fops.caller.get()
        return Iatt(uid=who.uid, gid=who.gid)

    async def _drop_linkto(self, where: int, loc: Loc) -> None:
        try:
            await self._unlink_stale_linkto(where, loc)
        except FopError as e:
            self.log.warning("%s: linkto file on %s left behind: %s", loc, self.names[where], e)

    async def _unlink_stale_linkto(self, where: int, loc: Loc) -> None:
        """Remove a linkto file - never a data file that took its place
        (unlink-only-if-dht-linkto-file), nor one a migration holds open."""
        with as_root():
            try:
                await self._wind(where, "unlink", dataclasses.replace(loc, gfid=None), 0,
                                 {SKIP_NON_LINKTO_UNLINK: UInt(1), SKIP_OPEN_FD_UNLINK: UInt(1)})
            except FopError as e:
                if e.errno not in (*MISSING, errno.EBUSY):
                    raise
