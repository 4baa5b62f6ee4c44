"""gfapi on a local storage/posix graph against plain os calls (issue 2).

Sequential write and read of 4 files x 256 MiB in 128 KiB requests, and
2000 small files (4 KiB create+write, stat, unlink), on the same disk, in
one run.  Writes end with fsync on every side.  Reads are measured cold
(the page cache dropped first, as root) and warm (a second pass, from the
page cache): the warm ratio shows glusterpy's own per-call cost, the cold
one what a user reading from disk sees.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from glusterpy.gfapi import Volume

from .report import Section
from .suite_protocol import drop_caches

NAME = "local-io"
TITLE = "gfapi on a local posix graph vs plain os calls"

REQUEST = 128 * 1024
VOLFILE = """
volume bench-posix
    type storage/posix
    option directory {brick}
end-volume
"""
WITH_CACHE = VOLFILE + """
volume bench-io-cache
    type performance/io-cache
    option cache-size 256MB
    subvolumes bench-posix
end-volume
"""


class OsSide:
    name = "plain os"

    def __init__(self, root: Path):
        self.root = root

    def write_file(self, name, size, buf):
        fd = os.open(self.root / name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        for off in range(0, size, len(buf)):
            os.pwrite(fd, buf, off)
        os.fsync(fd)
        os.close(fd)

    def read_file(self, name, size):
        fd = os.open(self.root / name, os.O_RDONLY)
        for off in range(0, size, REQUEST):
            os.pread(fd, REQUEST, off)
        os.close(fd)

    def small_create(self, name, data):
        fd = os.open(self.root / name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)

    def small_stat(self, name):
        os.stat(self.root / name)

    def small_unlink(self, name):
        os.unlink(self.root / name)


class GfapiSide:
    def __init__(self, vol: Volume, name: str):
        self.vol = vol
        self.name = name

    def write_file(self, name, size, buf):
        f = self.vol.open("/" + name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        for off in range(0, size, len(buf)):
            f.pwrite(buf, off)
        f.fsync()
        f.close()

    def read_file(self, name, size):
        f = self.vol.open("/" + name, os.O_RDONLY)
        for off in range(0, size, REQUEST):
            f.pread(REQUEST, off)
        f.close()

    def small_create(self, name, data):
        f = self.vol.open("/" + name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        f.write(data)
        f.close()

    def small_stat(self, name):
        self.vol.stat("/" + name)

    def small_unlink(self, name):
        self.vol.unlink("/" + name)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(side, files: int, size: int, small: int) -> dict[str, float]:
    buf = os.urandom(REQUEST)
    names = [f"big{i}" for i in range(files)]
    out = {}
    drop_caches()
    out["seq write MiB/s (fsync)"] = files * size / 2**20 / _timed(
        lambda: [side.write_file(n, size, buf) for n in names])
    drop_caches()
    out["seq read MiB/s (cold)"] = files * size / 2**20 / _timed(
        lambda: [side.read_file(n, size) for n in names])
    out["seq read MiB/s (warm)"] = files * size / 2**20 / _timed(
        lambda: [side.read_file(n, size) for n in names])
    data = os.urandom(4096)
    smalls = [f"s{i}" for i in range(small)]
    out["small create/s"] = small / _timed(lambda: [side.small_create(n, data) for n in smalls])
    out["small stat/s"] = small / _timed(lambda: [side.small_stat(n) for n in smalls])
    out["small unlink/s"] = small / _timed(lambda: [side.small_unlink(n) for n in smalls])
    for n in names:
        side.small_unlink(n)
    return out


def run(work: Path, quick: bool = False) -> Section:
    files, size, small = (4, 16 << 20, 200) if quick else (4, 256 << 20, 2000)
    results = {}
    plain = work / "plain"
    plain.mkdir()
    results["plain os"] = measure(OsSide(plain), files, size, small)
    for label, text in (("gfapi posix", VOLFILE), ("gfapi io-cache+posix", WITH_CACHE)):
        brick = work / label.replace(" ", "-").replace("+", "-")
        brick.mkdir()
        volfile = work / f"{brick.name}.vol"
        volfile.write_text(text.format(brick=brick))
        with Volume.from_volfile(volfile) as vol:
            results[label] = measure(GfapiSide(vol, label), files, size, small)
    metrics = list(results["plain os"])
    section = Section(f"{TITLE} ({files} x {size >> 20} MiB, {REQUEST >> 10} KiB requests, "
                      f"{small} small files)", ["metric"] + [
                          c for label in results for c in
                          ([label] if label == "plain os" else [label, "ratio"])])
    for m in metrics:
        cells = [m]
        base = results["plain os"][m]
        for label, r in results.items():
            cells.append(f"{r[m]:,.0f}")
            if label != "plain os":
                cells.append(f"{r[m] / base:.2f}x")
        section.add(*cells)
    section.notes.append("Aim (issue 2): >= 0.8x of plain os for 128 KiB sequential IO.")
    section.notes.append("Writes end with fsync; cold reads follow a drop of the page cache, "
                         "warm reads are a second pass from it.")
    return section
