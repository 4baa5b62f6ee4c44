"""glusterpy.gfapi: use a volume from Python, as libgfapi is used from C.

The synchronous API is shaped like libgfapi-python's `gluster.gfapi`
(`Volume`, `File`, `Dir`, `DirEntry`); the trio-native API is `AsyncVolume`.

    from glusterpy.gfapi import Volume
    with Volume.from_volfile("volfiles/demo.vol") as vol:
        vol.makedirs("/a/b")
        with vol.fopen("/a/b/c.txt", "w") as f:
            f.write(b"data")
        print(vol.listdir("/a/b"))

    with Volume("server1", "myvol") as vol:     # GETSPEC from server1:24007
        print(vol.listdir("/"))
"""

from .aio import AsyncDir, AsyncFile, AsyncVolume, DirectoryEntry, mode_to_flags
from .exceptions import LibgfapiException, VolumeNotMounted
from .sync import Dir, DirEntry_ as DirEntry, File, Volume

__all__ = [
    "Volume", "File", "Dir", "DirEntry", "AsyncVolume", "AsyncFile", "AsyncDir",
    "DirectoryEntry", "LibgfapiException", "VolumeNotMounted", "mode_to_flags",
]
