"""storage/bd: the xattr fops - GlusterFS's virtual keys (volume.type,
volume.caps, list-origin, user.glusterfs.bd), the hidden written mark, and
setting user.glusterfs.bd to make an LV (bd.c's bd_getxattr, bd_setxattr,
bd_removexattr)."""

from __future__ import annotations

import errno

from glusterpy import bd as lvm
from glusterpy.fops import DictReply, FopError, Reply

from .common import Image, fop_errors


class BdXattrs:
    """The xattrs of a file that is an LV."""

    @fop_errors
    async def getxattr(self, loc, name, xdata=None):
        """GlusterFS's virtual keys (volume.type, volume.caps, list-origin,
        user.glusterfs.bd) and glusterfs.bd.vg; the written mark is hidden."""
        answer = await self._virtual_xattr(name, lambda: self._image_of(loc))
        if answer is not None:
            return answer
        return self._hide_xattrs(await self.first_child.getxattr(loc, name, xdata),
                                 self._images.get(loc.gfid))

    @fop_errors
    async def fgetxattr(self, fd, name, xdata=None):
        async def image():
            return self._image_of_fd(fd)
        answer = await self._virtual_xattr(name, image)
        if answer is not None:
            return answer
        return self._hide_xattrs(await self.first_child.fgetxattr(fd, name, xdata),
                                 self._images.get(fd.gfid))

    @fop_errors
    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """Setting user.glusterfs.bd = "lv:SIZE" on a file without an LV
        creates it (GlusterFS's way of making a BD file); the written mark
        cannot be set."""
        rest = await self._set_bd_xattr(xattrs, lambda: self._image_of(loc))
        if not rest:
            return Reply()
        return self._fix(await self.first_child.setxattr(loc, rest, flags, xdata))

    @fop_errors
    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        async def image():
            return self._image_of_fd(fd)
        rest = await self._set_bd_xattr(xattrs, image)
        if not rest:
            return Reply()
        return self._fix(await self.first_child.fsetxattr(fd, rest, flags, xdata))

    async def removexattr(self, loc, name, xdata=None):
        if name in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
            raise FopError(errno.ENODATA)     # bd_removexattr
        return self._fix(await self.first_child.removexattr(loc, name, xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        if name in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
            raise FopError(errno.ENODATA)
        return self._fix(await self.first_child.fremovexattr(fd, name, xdata))

    # ======================================================================
    # helpers

    async def _virtual_xattr(self, name, image) -> DictReply | None:
        if name == lvm.VOL_TYPE_KEY:
            return DictReply({name: "1"})
        if name == lvm.VOL_CAPS_KEY:
            # snapshots work with or without device-mapper (glusterpy.bd_snapshot)
            caps = lvm.CAPS_BD | lvm.CAPS_OFFLOAD_COPY | lvm.CAPS_OFFLOAD_ZERO | \
                lvm.CAPS_OFFLOAD_SNAPSHOT
            if self.lvm.dm and self._pool:
                caps |= lvm.CAPS_THIN
            return DictReply({name: str(caps)})
        if name == lvm.VG_KEY:
            return DictReply({name: self.vgname})
        if name in (lvm.ORIGIN_KEY, lvm.BD_XATTR):
            img = await image()
            if img is None or not img.sized:
                raise FopError(errno.ENODATA)
            if name == lvm.BD_XATTR:
                return DictReply({name: self._bd_value(img)})
            if not img.lv or not img.lv.origin:
                raise FopError(errno.ENODATA)
            return DictReply({name: img.lv.origin})
        if name == lvm.WRITTEN_XATTR:
            raise FopError(errno.ENODATA)
        return None

    def _hide_xattrs(self, reply: DictReply, img: Image | None) -> DictReply:
        reply.dict.pop(lvm.WRITTEN_XATTR, None)
        reply.dict.pop(lvm.VG_BINDING_XATTR, None)
        if lvm.BD_XATTR in reply.dict and img is not None and img.sized:
            reply.dict[lvm.BD_XATTR] = self._bd_value(img)
        return reply

    async def _set_bd_xattr(self, xattrs: dict, image) -> dict:
        """Handle the bd keys of a setxattr; the rest is returned."""
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if lvm.WRITTEN_XATTR in xattrs:
            raise FopError(errno.EPERM, f"{lvm.WRITTEN_XATTR} is kept by storage/bd")
        if lvm.BD_XATTR not in xattrs:
            return xattrs
        img = await image()
        if img is None:
            raise FopError(errno.EINVAL, "only a regular file can be an LV")
        value = xattrs[lvm.BD_XATTR]
        text = value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) \
            else str(value)
        kind, _, size = text.strip("\0").partition(":")
        if kind not in (lvm.BD_TYPE_LV, lvm.BD_TYPE_THIN):
            raise FopError(errno.EINVAL, f"invalid bd type {kind!r}")
        if kind == lvm.BD_TYPE_THIN and not self._pool:
            raise FopError(errno.EOPNOTSUPP, "thin LVs are not supported by this volume")
        if img.sized:
            raise FopError(errno.EEXIST, f"{img.name} already has its LV")
        try:
            nbytes = lvm.parse_size(size) if size else self._vg.extent_size
        except ValueError as e:
            raise FopError(errno.EINVAL, str(e)) from None
        async with img.lock:
            await self._set_lv_size(img, lvm.round_up(max(nbytes, 1), self._vg.extent_size))
        return {k: v for k, v in xattrs.items() if k != lvm.BD_XATTR}
