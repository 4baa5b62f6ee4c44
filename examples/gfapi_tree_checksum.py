#!/usr/bin/env python3
"""Copy a local directory tree into a GlusterFS volume, walk it there and
check every file's SHA-256 against the original.

Written for libgfapi-python (`from gluster import gfapi`) and nothing else:
it runs unchanged on libgfapi-python and on glusterpy's `gluster.gfapi`,
against GlusterFS or glusterpy volumes.

    gfapi_tree_checksum.py HOST VOLNAME SRC_DIR [--port 24007] [--dest /copy]
                           [--keep] [--manifest]

Exit status 0 when the copy matches (files, sizes, checksums, modes,
mtimes, symlinks), 1 when it does not, 2 when the volume cannot be used.
"""

import argparse
import errno
import hashlib
import os
import stat
import sys
import time

from gluster import gfapi
from gluster.gfapi.exceptions import LibgfapiException

CHUNK = 128 * 1024


def local_tree(src):
    """relative path -> ("file", sha256, size, mode, mtime) | ("link", target) | ("dir",)"""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir",)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(CHUNK), b""):
                        h.update(chunk)
                tree[rel] = ("file", h.hexdigest(), st.st_size, stat.S_IMODE(st.st_mode),
                             int(st.st_mtime))
    return tree


def upload(vol, src, dest):
    """The tree under src, copied to dest on the volume; returns bytes copied."""
    copied = 0
    vol.makedirs(dest, 0o755)
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        target_dir = dest if rel_dir == "." else os.path.join(dest, rel_dir)
        for name in dirnames:
            local = os.path.join(dirpath, name)
            target = os.path.join(target_dir, name)
            if os.path.islink(local):
                vol.symlink(os.readlink(local), target)
            else:
                vol.mkdir(target, stat.S_IMODE(os.stat(local).st_mode))
        for name in filenames:
            local = os.path.join(dirpath, name)
            target = os.path.join(target_dir, name)
            if os.path.islink(local):
                vol.symlink(os.readlink(local), target)
                continue
            st = os.stat(local)
            with open(local, "rb") as fsrc:
                with vol.fopen(target, "wb") as fdst:
                    vol.copyfileobj(fsrc, fdst, CHUNK)
            vol.chmod(target, stat.S_IMODE(st.st_mode))
            vol.utime(target, (st.st_atime, st.st_mtime))
            copied += st.st_size
    return copied


def volume_tree(vol, dest):
    """The same description as local_tree(), read back through the volume."""
    tree = {}
    for dirpath, dirnames, filenames in vol.walk(dest):
        rel_dir = os.path.relpath(dirpath, dest)
        for name in dirnames:
            tree[os.path.normpath(os.path.join(rel_dir, name))] = ("dir",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if vol.islink(path):
                tree[rel] = ("link", vol.readlink(path))
                continue
            h = hashlib.sha256()
            size = 0
            with vol.fopen(path, "rb") as f:
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    size += len(chunk)
            st = vol.stat(path)
            if st.st_size != size:
                raise OSError(errno.EIO, "read %d bytes of %s, stat says %d"
                              % (size, path, st.st_size))
            tree[rel] = ("file", h.hexdigest(), size, stat.S_IMODE(st.st_mode),
                         int(st.st_mtime))
    return tree


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host", help="a glusterd (or glusterpyd) host; a,b for several")
    parser.add_argument("volname")
    parser.add_argument("src", help="the local directory to copy")
    parser.add_argument("--port", type=int, default=24007)
    parser.add_argument("--dest", default=None,
                        help="where on the volume (default: /tree-checksum-PID)")
    parser.add_argument("--keep", action="store_true", help="leave the copy on the volume")
    parser.add_argument("--manifest", action="store_true", help="print sha256 and path per file")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.src):
        print("%s: not a directory" % args.src, file=sys.stderr)
        return 2
    dest = args.dest or "/tree-checksum-%d" % os.getpid()

    started = time.time()
    want = local_tree(args.src)
    vol = gfapi.Volume(args.host.split(","), args.volname, port=args.port)
    try:
        vol.mount()
    except LibgfapiException as e:
        print("cannot mount %s on %s: %s" % (args.volname, args.host, e), file=sys.stderr)
        return 2
    try:
        if vol.exists(dest):
            print("%s already exists on the volume" % dest, file=sys.stderr)
            return 2
        copied = upload(vol, args.src, dest)
        uploaded = time.time()
        got = volume_tree(vol, dest)
        checked = time.time()
        if not args.keep:
            vol.rmtree(dest)
    finally:
        vol.umount()

    bad = sorted(set(want) ^ set(got)) + sorted(p for p in set(want) & set(got)
                                               if want[p] != got[p])
    if args.manifest:
        for rel in sorted(got):
            if got[rel][0] == "file":
                print("%s  %s" % (got[rel][1], rel))
    files = sum(1 for v in want.values() if v[0] == "file")
    dirs = sum(1 for v in want.values() if v[0] == "dir")
    links = sum(1 for v in want.values() if v[0] == "link")
    print("%d files (%d bytes), %d directories, %d symlinks: copy %.2fs, walk+checksum "
          "%.2fs, total %.2fs: %s" % (files, copied, dirs, links, uploaded - started,
                                     checked - uploaded, time.time() - started,
                                     "OK" if not bad else "%d MISMATCHES" % len(bad)))
    for rel in bad:
        print("mismatch: %s: local %s, volume %s" % (rel, want.get(rel), got.get(rel)),
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
