"""The names of libgfapi-python's `gluster.gfapi.api` that programs import.

libgfapi-python's api module is its ctypes binding to libgfapi.so: the C
structures it returns (`Stat` from stat()/lstat()/fstat() and readdirplus,
`Statvfs` from statvfs(), `Dirent` from iterating a `Dir`, `Timespec`) and
one `glfs_*` function per C call.  Here the structures are the same ctypes
structures with the same fields - so `isinstance(s, api.Stat)`, `s.st_size`
and `s.st_mtimensec` keep working - filled from glusterpy's client instead
of by libgfapi.  There is no libgfapi.so behind them: the `glfs_*` functions
do not exist, and asking for one says so instead of failing somewhere in C.
"""

import ctypes


# Field order and types are x86_64 glibc's struct stat as libgfapi-python
# declares them (st_nlink before st_mode), so code that reads them by name
# or packs them sees what it saw there.
class Stat(ctypes.Structure):
    _fields_ = [
        ("st_dev", ctypes.c_ulong),
        ("st_ino", ctypes.c_ulong),
        ("st_nlink", ctypes.c_ulong),
        ("st_mode", ctypes.c_uint),
        ("st_uid", ctypes.c_uint),
        ("st_gid", ctypes.c_uint),
        ("st_rdev", ctypes.c_ulong),
        ("st_size", ctypes.c_ulong),
        ("st_blksize", ctypes.c_ulong),
        ("st_blocks", ctypes.c_ulong),
        ("st_atime", ctypes.c_ulong),
        ("st_atimensec", ctypes.c_ulong),
        ("st_mtime", ctypes.c_ulong),
        ("st_mtimensec", ctypes.c_ulong),
        ("st_ctime", ctypes.c_ulong),
        ("st_ctimensec", ctypes.c_ulong),
    ]

    def __repr__(self):
        return "<Stat " + " ".join(f"{name}={getattr(self, name)}"
                                   for name, _ in self._fields_) + ">"


class Statvfs(ctypes.Structure):
    _fields_ = [
        ("f_bsize", ctypes.c_ulong),
        ("f_frsize", ctypes.c_ulong),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_favail", ctypes.c_ulong),
        ("f_fsid", ctypes.c_ulong),
        ("f_flag", ctypes.c_ulong),
        ("f_namemax", ctypes.c_ulong),
        ("__f_spare", ctypes.c_int * 6),
    ]


class Dirent(ctypes.Structure):
    _fields_ = [
        ("d_ino", ctypes.c_ulong),
        ("d_off", ctypes.c_ulong),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_char),
        ("d_name", ctypes.c_char * 256),
    ]


class Timespec(ctypes.Structure):
    _fields_ = [
        ("tv_sec", ctypes.c_long),
        ("tv_nsec", ctypes.c_long),
    ]


#: libgfapi-python names the library it loaded; there is none here
so_file_name = None
client = None


def __getattr__(name):
    if name.startswith("glfs_"):
        raise AttributeError(
            f"gluster.gfapi.api.{name}: glusterpy's gluster.gfapi has no libgfapi C library "
            f"behind it, so the raw glfs_* calls do not exist; use the Volume, File and Dir "
            f"methods")
    raise AttributeError(f"module 'gluster.gfapi.api' has no attribute {name!r}")
