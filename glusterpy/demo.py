"""`make run`: the embedded default - a local demo volume, shown working.

Mounts volfiles/demo.vol (storage/posix under performance/io-cache) on a
brick directory under ./run/demo, uses it through glusterpy.gfapi, and shows
what landed on disk in GlusterFS's brick layout.  The data stays between
runs.  Once the management daemon exists, `make run` starts it instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from glusterpy.fops import GFID
from glusterpy.gfapi import Volume

VOLFILE = Path(__file__).resolve().parent.parent / "volfiles" / "demo.vol"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glusterpy.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="run/demo", help="where the brick lives")
    args = parser.parse_args(argv)
    brick = Path(args.workdir).resolve() / "brick"
    brick.mkdir(parents=True, exist_ok=True)

    print(f"volume 'demo' from {VOLFILE}")
    print(f"brick directory:  {brick}")
    with Volume.from_volfile(VOLFILE, xlator_options=[f"demo-posix.directory={brick}"]) as vol:
        vol.makedirs("/docs", exist_ok=True)
        with vol.fopen("/docs/hello.txt", "w") as f:
            f.write(b"hello from glusterpy\n")
        if not vol.exists("/docs/hello.link"):
            vol.symlink("hello.txt", "/docs/hello.link")
        vol.setxattr("/docs/hello.txt", "user.demo", b"yes")
        with vol.fopen("/docs/hello.link", "r") as f:
            content = f.read()
        print(f"\nread back through the symlink: {content!r}")
        print(f"xattr user.demo = {vol.getxattr('/docs/hello.txt', 'user.demo')!r}")
        print("listing of /docs:")
        for entry in vol.scandir("/docs"):
            s = entry.stat()
            print(f"  {entry.name:12} {oct(s.st_mode):>10} {s.st_size:6} bytes  ino {s.st_ino}")
        sv = vol.statvfs("/")
        print(f"statvfs: {sv.f_bavail * sv.f_frsize // (1 << 20)} MiB free")

    gfid = GFID(os.getxattr(brick / "docs" / "hello.txt", "trusted.gfid"))
    handle = brick / ".glusterfs" / str(gfid)[:2] / str(gfid)[2:4] / str(gfid)
    print("\non disk, as GlusterFS lays it out:")
    print(f"  {brick / 'docs/hello.txt'}  trusted.gfid = {gfid}")
    print(f"  {handle}  (hard link, {os.stat(handle).st_nlink} links)")
    print("\nuse it from Python:")
    print("  from glusterpy.gfapi import Volume")
    print(f"  vol = Volume.from_volfile('{VOLFILE}',")
    print(f"                            xlator_options=['demo-posix.directory={brick}'])")
    print("  vol.listdir('/docs')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
