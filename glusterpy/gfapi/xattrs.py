"""gfapi: extended attributes - the volume's path calls and the value and
name rules (getxattr(2)'s and listxattr(2)'s size, setxattr(2)'s flags)
that AsyncFile's f*xattr calls share.
"""

from __future__ import annotations

import errno
import os

from ..fops import FopError
from ..keys import GFID_STRING_KEY
from .common import edge, oserror


XATTR_CREATE, XATTR_REPLACE = 1, 2


class VolumeXattrs:
    """AsyncVolume's xattr calls."""

    @edge
    async def getxattr(self, path: str, key: str, size: int = 0, *,
                       follow_symlinks: bool = True) -> bytes:
        """The value of xattr `key`; with size > 0 a longer value is ERANGE."""
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            iatt = r.require()
            if key == GFID_STRING_KEY:
                # answered here from the lookup's gfid, as GlusterFS's
                # fuse-bridge answers it: GlusterFS's bricks do not know the key
                return xattr_value({key: str(iatt.gfid).encode()}, key, size, path)
            reply = await self._top.getxattr(r.loc(), key, None)
            return xattr_value(reply.dict, key, size, path)

    @edge
    async def listxattr(self, path: str, size: int = 0, *,
                        follow_symlinks: bool = True) -> list[str]:
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            reply = await self._top.getxattr(r.loc(), None, None)
            return xattr_names(reply.dict, size, path)

    @edge
    async def setxattr(self, path: str, key: str, value: bytes, flags: int = 0, *,
                       follow_symlinks: bool = True) -> None:
        check_xattr_flags(flags)
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            await self._top.setxattr(r.loc(), {key: xattr_bytes(value)}, flags, None)

    @edge
    async def removexattr(self, path: str, key: str, *, follow_symlinks: bool = True) -> None:
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            await self._top.removexattr(r.loc(), key, None)


def xattr_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def check_xattr_flags(flags: int) -> None:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE) or flags == XATTR_CREATE | XATTR_REPLACE:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


def xattr_value(d: dict, key: str, size: int, path: str | None = None) -> bytes:
    """The value from a getxattr reply, with getxattr(2)'s size rule."""
    if key not in d:
        raise oserror(FopError(errno.ENODATA), path)
    value = d[key]
    value = value.encode() if isinstance(value, str) else bytes(value)
    if size and len(value) > size:
        raise oserror(FopError(errno.ERANGE), path)
    return value


def xattr_names(d: dict, size: int, path: str | None = None) -> list[str]:
    """The names from a list-all getxattr reply, with listxattr(2)'s size rule."""
    names = sorted(d)
    if size and sum(len(os.fsencode(n)) + 1 for n in names) > size:
        raise oserror(FopError(errno.ERANGE), path)
    return names
