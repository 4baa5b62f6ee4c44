"""`from gluster import gfapi`: libgfapi-python's API on glusterpy's client.

A program written for libgfapi-python 1.x (gluster/libgfapi-python) runs
unchanged: `gfapi.Volume(hosts, volname, ...)`, `mount()`, the `Volume`,
`File`, `Dir` and `DirEntry` methods, `gluster.gfapi.exceptions` and the
structures of `gluster.gfapi.api`.  No libgfapi.so is involved: glusterpy
speaks GlusterFS's protocol itself, to GlusterFS 10 clusters and to
glusterpy's own.  The module `gluster.gfapi.gfapi` says where behaviour
follows libgfapi-python's documentation rather than its code.
"""

__version__ = "1.2"

from .gfapi import Dir, DirEntry, File, Volume

__all__ = ["File", "Dir", "DirEntry", "Volume"]
