"""The pure core of cluster/distribute: names to hashes, hashes to bricks
(dht-layout.c, dht-hashfn.c, and the layout arithmetic of dht-selfheal.c).

Everything here is a function of its arguments - no I/O, no trio - so that
the translator (the rest of this package), the rebalance process
(glusterpy/rebalance) and the tests share one definition of where a name lives.
It follows GlusterFS 10 to the bit:

* `dm_hash` is libglusterfs's gf_dm_hashfn: Davies-Meyer over TEA rounds,
  reading the name as little-endian 32-bit words, the tail bytes as the
  x86-64 C compiler reads them (`char` is signed there, so a byte >= 0x80
  sets the 24 bits above it).
* `NameHasher` is dht_hash_compute: before hashing, a name matching
  `extra-hash-regex`, or else `rsync-hash-regex` (by default rsync's
  temporary names, `^\\.(.+)\\.[^.]+$`), is replaced by the regex's first
  group, so `.foo.Xy12Ab` lands where `foo` will.
* The layout xattr `trusted.glusterfs.dht` is 16 bytes: commit hash, hash
  type, start and stop of the brick's range, each a big-endian uint32
  (dht_disk_layout_extract/merge).
* `new_directory_layout` is dht_selfheal_layout_new_directory: bricks sorted
  by subvolume name, ranges handed out in that order from the brick
  `hash(path) % count` (or of the gfid's text with
  randomize-hash-range-by-gfid), equal ranges of 0xffffffff // n - or,
  weighted, proportional to each brick's size in 1 MiB chunks, computed in
  C doubles exactly as GlusterFS does - and the last brick's range ending
  at 0xffffffff.
* `fix_layout` is dht_fix_layout_of_directory: the new-directory layout,
  then ranges swapped between bricks wherever that keeps more of the old
  assignment (dht_selfheal_layout_maximize_overlap), in uint32 arithmetic.
* `anomalies` is dht_layout_anomalies: holes, overlaps, missing and down
  bricks of a layout as the lookups found it.
* `itransform`/`deitransform` encode the subvolume in a readdir d_off
  (gf_itransform/gf_deitransform), so a listing resumes on the right brick.
  GlusterFS counts the graph's leaves and numbers them by client; here the
  count is the distribute translator's children and the number its index,
  which is the same for the usual graph and also works over replicate.

Layout entries carry GlusterFS's per-brick `err` as dht_layout_merge leaves
it: 0 for a directory found (with a range, or 0-0 when it has no layout
xattr), an errno for a failed lookup (ENOENT: missing, ENOTCONN: brick
down), and -1 for "present, give it a range" while a layout is computed.
"""

from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass, replace
from typing import Iterable, NamedTuple, Sequence

# --------------------------------------------------------------------------
# GlusterFS's numbers

M32 = 0xFFFFFFFF
HASH_TYPE_DM = 0           # DHT_HASH_TYPE_DM
HASH_TYPE_DM_USER = 1      # DHT_HASH_TYPE_DM_USER: a layout set by hand, left alone
LAYOUT_HASH_INVALID = 1    # DHT_LAYOUT_HASH_INVALID: a commit hash no volume has
#: the default rsync-hash-regex (dht_init_regex): rsync's ".name.XXXXXX"
RSYNC_HASH_REGEX = r"^\.(.+)\.[^.]+$"

_DM_DELTA = 0x9E3779B9
_DM_FULLROUNDS = 10
_DM_PARTROUNDS = 6
_DISK_LAYOUT = struct.Struct(">IIII")
DISK_LAYOUT_SIZE = _DISK_LAYOUT.size

# d_off transform (libglusterfs/src/gf-dirent.c)
_TOP_BIT = 1 << 62
_MASK64 = (1 << 64) - 1
_PRESENT_MASK = _MASK64 >> 1
_SHIFT_BITS = 1


# --------------------------------------------------------------------------
# The hash


def _dm_round(rounds: int, a: Sequence[int], h0: int, h1: int) -> tuple[int, int]:
    total = 0
    b0, b1 = h0, h1
    a0, a1, a2, a3 = a
    for _ in range(rounds):
        total = (total + _DM_DELTA) & M32
        b0 = (b0 + ((((b1 << 4) + a0) ^ (b1 + total) ^ ((b1 >> 5) + a1)))) & M32
        b1 = (b1 + ((((b0 << 4) + a2) ^ (b0 + total) ^ ((b0 >> 5) + a3)))) & M32
    return (h0 + b0) & M32, (h1 + b1) & M32


def dm_hash(msg: bytes) -> int:
    """gf_dm_hashfn of `msg` (no terminating NUL), as GlusterFS computes it
    on x86-64."""
    length = len(msg)
    h0, h1 = 0x9464A485, 0x542E1A94
    pad = (length | (length << 8)) & M32
    pad = (pad | (pad << 16)) & M32
    words = struct.unpack_from(f"<{length // 4}I", msg)
    quads = length // 16
    for q in range(quads):
        h0, h1 = _dm_round(_DM_PARTROUNDS, words[4 * q:4 * q + 4], h0, h1)
    pos_word = 4 * quads
    left_words = length // 4 - pos_word
    left_bytes = length - 16 * quads
    block = []
    for _ in range(4):
        if left_words:
            block.append(words[pos_word])
            pos_word += 1
            left_words -= 1
            left_bytes -= 4
        else:
            value = pad
            while left_bytes:
                byte = msg[length - left_bytes]
                # `array[j] |= msg[i]` with a signed char: sign-extended
                value = ((value << 8) & M32) | (byte if byte < 0x80 else (byte - 256) & M32)
                left_bytes -= 1
            block.append(value)
    h0, h1 = _dm_round(_DM_FULLROUNDS, block, h0, h1)
    return h0 ^ h1


class NameHasher:
    """dht_hash_compute: the hash of a name after the rsync/extra regex
    munging.  Regexes are POSIX extended regexes in GlusterFS; they are
    compiled here as Python regexes over bytes (`.` matching any byte),
    which agree on the default and on the usual prefix/suffix patterns."""

    def __init__(self, rsync_regex: str | None = RSYNC_HASH_REGEX,
                 extra_regex: str | None = None):
        self.rsync = _compile(rsync_regex)
        self.extra = _compile(extra_regex)

    def munge(self, name: bytes) -> bytes:
        """The part of `name` that is hashed (dht_munge_name)."""
        for regex in (self.extra, self.rsync):
            if regex is None:
                continue
            m = regex.search(name)
            if m is not None and m.re.groups >= 1 and m.start(1) != -1:
                return m.group(1)
        return name

    def hash(self, name: str | bytes) -> int:
        raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        return dm_hash(self.munge(raw))


def _compile(regex: str | None):
    if regex is None or regex == "none":
        return None
    return re.compile(regex.encode("utf-8", "surrogateescape"), re.DOTALL)


# --------------------------------------------------------------------------
# The on-disk layout


class DiskLayout(NamedTuple):
    commit_hash: int
    type: int
    start: int
    stop: int


def encode_disk_layout(commit_hash: int, hash_type: int, start: int, stop: int) -> bytes:
    """The 16 bytes of trusted.glusterfs.dht for one brick."""
    return _DISK_LAYOUT.pack(commit_hash & M32, hash_type & M32, start & M32, stop & M32)


def decode_disk_layout(raw: bytes) -> DiskLayout:
    """Parse trusted.glusterfs.dht; ValueError when it is not 16 bytes or
    names a hash type GlusterFS does not know (dht_disk_layout_merge)."""
    if raw is None or len(raw) != DISK_LAYOUT_SIZE:
        raise ValueError(f"a DHT layout xattr is {DISK_LAYOUT_SIZE} bytes, "
                         f"not {len(raw) if raw is not None else 'absent'}")
    layout = DiskLayout(*_DISK_LAYOUT.unpack(raw))
    if layout.type not in (HASH_TYPE_DM, HASH_TYPE_DM_USER):
        raise ValueError(f"unknown DHT hash type {layout.type}")
    return layout


# --------------------------------------------------------------------------
# Layouts in memory


@dataclass(slots=True)
class LayoutEntry:
    """One brick's part of a directory's layout (dht_layout_entry_t)."""

    index: int              # the subvolume's position among distribute's children
    name: str               # the subvolume's name (layouts sort by it)
    start: int = 0
    stop: int = 0
    commit_hash: int = 0
    err: int = 0            # see the module docstring

    @property
    def has_range(self) -> bool:
        return self.err == 0 and self.start != self.stop

    def covers(self, hash_value: int) -> bool:
        return self.start <= hash_value <= self.stop


@dataclass(slots=True)
class Layout:
    """A directory's layout: one entry per subvolume, in no fixed order."""

    entries: list[LayoutEntry]
    type: int = HASH_TYPE_DM
    commit_hash: int = 0
    spread: int = 0         # directory-layout-spread, 0 = every brick

    def copy(self) -> "Layout":
        return Layout([replace(e) for e in self.entries], self.type, self.commit_hash,
                      self.spread)

    def entry(self, index: int) -> LayoutEntry | None:
        for e in self.entries:
            if e.index == index:
                return e
        return None

    def search(self, hash_value: int) -> int | None:
        """The subvolume index whose range holds `hash_value`
        (dht_layout_search: the first entry that covers it).  Entries
        without a range (start == stop) are skipped: GlusterFS would match
        hash 0 against a 0-0 entry."""
        for e in self.entries:
            if e.start <= hash_value <= e.stop and e.start != e.stop:
                return e.index
        return None

    def whole(self) -> int | None:
        """The subvolume `search` gives for every hash value, when the first
        entry with a range spans all 32 bits (a volume of one subvolume):
        then a name's subvolume needs no hash of it.  None otherwise."""
        for e in self.entries:
            if e.start != e.stop:
                return e.index if e.start == 0 and e.stop == M32 else None
        return None

    def merge(self, index: int, name: str, err: int, raw: bytes | None) -> None:
        """dht_layout_merge: record one brick's lookup answer (err 0 with
        `raw` the layout xattr, or an errno)."""
        entry = LayoutEntry(index, name, err=err if err else 0)
        self.entries.append(entry)
        if err:
            return
        if raw is None:
            return          # present without a layout: takes no part
        disk = decode_disk_layout(raw)
        if disk.type == HASH_TYPE_DM_USER:
            self.type = HASH_TYPE_DM_USER
        entry.commit_hash, entry.start, entry.stop = disk.commit_hash, disk.start, disk.stop
        if self.commit_hash == 0:
            self.commit_hash = disk.commit_hash
        elif self.commit_hash != disk.commit_hash:
            self.commit_hash = LAYOUT_HASH_INVALID

    def disk(self, index: int, idle_commit_hash: int = 0) -> bytes:
        """The xattr value for one subvolume; a brick without a range gets
        0-0 with `idle_commit_hash` (GlusterFS's "dummy" layout: commit hash
        0 from self-heal, the directory's from fix-layout)."""
        e = self.entry(index)
        if e is None or e.start == e.stop:
            return encode_disk_layout(idle_commit_hash, self.type, 0, 0)
        return encode_disk_layout(e.commit_hash, self.type, e.start, e.stop)

    def sort_by_start(self) -> None:
        """dht_layout_sort: ascending start; 0-0 entries by their stop."""
        self.entries.sort(key=start_key)

    def sort_by_name(self) -> None:
        """dht_layout_sort_volname."""
        self.entries.sort(key=lambda e: e.name.encode())


def start_key(e: LayoutEntry) -> int:
    # qsort with dht_layout_entry_cmp compares to a 0-0 entry by stop;
    # with non-negative numbers both orders agree with plain (start, stop)
    return (e.start << 32) | e.stop


class Anomalies(NamedTuple):
    holes: int
    overlaps: int
    missing: int
    down: int
    misc: int
    no_space: int


def anomalies(layout: Layout) -> Anomalies:
    """dht_layout_anomalies on a copy sorted by start."""
    entries = sorted(layout.entries, key=start_key)
    holes = overlaps = missing = down = misc = no_space = 0
    if not entries:
        return Anomalies(1, 0, 0, 0, 0, 0)
    last_stop = (entries[0].start - 1) & M32
    prev_stop = last_stop
    virgin = True
    for e in entries:
        if e.err in (-1, errno.ENOENT, errno.ESTALE):
            missing += 1
            continue
        if e.err == errno.ENOTCONN:
            down += 1
            continue
        if e.err == errno.ENOSPC:
            no_space += 1
            continue
        if e.err != 0:
            misc += 1
            continue
        if e.start == e.stop:
            continue            # takes no part (spread, or no layout yet)
        virgin = False
        if ((prev_stop + 1) & M32) < e.start:
            holes += 1
        if ((prev_stop + 1) & M32) > e.start:
            overlaps += 1
        prev_stop = e.stop
    if (last_stop - prev_stop) & M32 or virgin:
        holes += 1
    return Anomalies(holes, overlaps, missing, down, misc, no_space)


def missing_dirs(layout: Layout) -> int:
    """dht_layout_missing_dirs: bricks where the directory is absent."""
    return sum(1 for e in layout.entries
               if e.err == errno.ENOENT or (e.err == -1 and e.start == e.stop == 0))


def needs_heal(layout: Layout) -> bool:
    """dht_layout_normalize != 0: holes, overlaps or missing directories."""
    a = anomalies(layout)
    return bool(a.holes or a.overlaps or missing_dirs(layout))


def layout_span(layout: Layout) -> int:
    """dht_layout_span: bricks with a range."""
    return sum(1 for e in layout.entries if not e.err and e.start != e.stop)


# --------------------------------------------------------------------------
# Computing layouts


def chunks_from_statfs(blocks: int, bsize: int) -> int:
    """A brick's size in 1 MiB chunks, as dht_du_info_cbk counts it."""
    if not blocks or not bsize:
        return 0
    per_chunk = max(1, (1 << 20) // bsize)
    return (blocks + per_chunk - 1) // per_chunk


def layout_count(layout: Layout, decommissioned: Iterable[int] = ()) -> int:
    """dht_get_layout_count for a new layout: how many bricks get a range.
    Marks decommissioned bricks EINVAL and present ones (err 0) -1."""
    out = set(decommissioned)
    for e in layout.entries:
        if e.index in out:
            e.err = errno.EINVAL
    count = 0
    for e in layout.entries:
        if e.err in (-1, 0, errno.ENOENT):
            count += 1
            if e.err == 0:
                e.err = -1
    if not count:
        # no brick has room, but a directory cannot wait for one
        for e in layout.entries:
            if e.err == errno.ENOSPC:
                e.err = -1
                count += 1
    if layout.spread and layout.spread <= count:
        return layout.spread
    return count or 1


def alloc_start(layout: Layout, key: str, hasher: NameHasher) -> int:
    """dht_selfheal_layout_alloc_start: where the round of ranges begins."""
    if not layout.entries:
        return 0
    return hasher.hash(key) % len(layout.entries)


def new_directory_layout(layout: Layout, path: str, hasher: NameHasher, *,
                         chunks: dict[int, int] | None = None,
                         weighted: bool = True, gfid_text: str | None = None,
                         decommissioned: Iterable[int] = ()) -> Layout:
    """dht_selfheal_layout_new_directory on `layout` (changed in place and
    returned): ranges for the entries whose err is -1 or ENOENT, in the
    order of subvolume names, beginning at alloc_start.  `chunks` maps a
    subvolume index to its size in 1 MiB chunks; with `weighted` and a size
    for every brick used, ranges are proportional to size.  `gfid_text`
    (randomize-hash-range-by-gfid) replaces the path for the start."""
    layout.sort_by_name()
    use = layout_count(layout, decommissioned)
    chunks = chunks or {}
    weight = weighted
    total = 0
    used = 0
    for e in layout.entries:
        if e.err not in (-1, errno.ENOENT):
            continue
        size = chunks.get(e.index, 0)
        if not size:
            weight = False
            break
        total += size
        used += 1
        if used >= use:
            break
    if weight and total:
        chunk = float(M32) / float(total)
    else:
        weight = False
        chunk = float(M32) / float(use)
    first = alloc_start(layout, gfid_text if gfid_text is not None else path, hasher)
    for e in layout.entries:
        e.start = e.stop = 0
    start = 0
    used = 0
    n = len(layout.entries)
    for k in range(n):
        e = layout.entries[(k + first) % n]
        if e.err not in (-1, errno.ENOENT):
            continue
        if weight:
            size = chunks.get(e.index, 0)
            if not size:
                continue
        else:
            size = 1
        span = int(chunk * size) & M32       # C's double -> uint32_t
        e.start = start
        e.stop = (start + span - 1) & M32
        e.commit_hash = layout.commit_hash
        used += 1
        if used >= use:
            e.stop = M32
            break
        start = (start + span) & M32
    return layout


def overlap(old: LayoutEntry, new: LayoutEntry) -> int:
    """dht_overlap_calc, in uint32."""
    if old.err > 0 or new.err > 0:
        return 0
    if old.start == old.stop or new.start == new.stop:
        return 0
    if old.start > new.stop or old.stop < new.start:
        return 0
    return (min(old.stop, new.stop) - max(old.start, new.start) + 1) & M32


def maximize_overlap(new: Layout, old: Layout) -> Layout:
    """dht_selfheal_layout_maximize_overlap: swap ranges between bricks of
    `new` where more of `old`'s assignment survives (so fewer files move).
    Both layouts are sorted by name first, so entry i is one brick in both."""
    old.sort_by_name()
    new.sort_by_name()
    n, m = len(new.entries), len(old.entries)
    table = [[overlap(old.entries[j], new.entries[i]) if j < m and i < n else 0
              for j in range(m)] for i in range(n)]

    def ov(i, j):
        return table[i][j] if j < m else 0

    for i in range(n):
        if new.entries[i].err > 0:
            continue
        best, best_at = 0, i
        for j in range(i + 1, n):
            if new.entries[j].err > 0:
                continue
            current = (ov(i, i) + ov(j, j)) & M32
            swapped = (ov(i, j) + ov(j, i)) & M32
            if swapped > current:
                gain = swapped - current
                if gain > best:
                    best, best_at = gain, j
        if best_at != i:
            a, b = new.entries[i], new.entries[best_at]
            a.start, a.stop, b.start, b.stop = b.start, b.stop, a.start, a.stop
            table[i], table[best_at] = table[best_at], table[i]
    return new


def fix_layout(old: Layout, path: str, hasher: NameHasher, *,
               chunks: dict[int, int] | None = None, weighted: bool = True,
               gfid_text: str | None = None,
               decommissioned: Iterable[int] = ()) -> Layout | None:
    """dht_fix_layout_of_directory: the layout a fix-layout (rebalance)
    writes for a directory whose current layout is `old`.  None when a
    brick is down (GlusterFS then leaves the layout alone); `old` itself
    when it was set by hand (hash type DM_USER)."""
    if old.type == HASH_TYPE_DM_USER:
        return old
    if anomalies(old).down:
        return None
    new = Layout([LayoutEntry(e.index, e.name, err=-1 if e.err == errno.ENOSPC else e.err)
                  for e in old.entries], old.type, old.commit_hash, old.spread)
    new = new_directory_layout(new, path, hasher, chunks=chunks, weighted=weighted,
                               gfid_text=gfid_text, decommissioned=decommissioned)
    sizes = [chunks.get(e.index, 0) for e in new.entries] if chunks else []
    equal = bool(sizes) and all(s == sizes[0] for s in sizes)
    if equal or not weighted:
        maximize_overlap(new, old.copy())
    for e in new.entries:
        if e.err == -1:
            e.err = 0       # as it will be once written (every brick is)
    return new


# --------------------------------------------------------------------------
# readdir offsets


def bits_for(num: int) -> int:
    bits, ctrl = 0, 1
    while ctrl < num:
        ctrl *= 2
        bits += 1
    return bits


def itransform(offset: int, index: int, count: int) -> int:
    """gf_itransform: a child's d_off with the child's index folded in."""
    offset &= _MASK64
    if offset == _MASK64:
        return _MASK64
    if offset == 0:
        return 0
    if count == 1:
        return offset
    bits = bits_for(count)
    hi_mask = ~(_PRESENT_MASK >> (bits + 1)) & _MASK64
    if offset & hi_mask:
        off_mask = (_MASK64 << bits) & _MASK64
        return (_TOP_BIT | ((offset >> _SHIFT_BITS) & off_mask) | index) & _MASK64
    return (offset * count + index) & _MASK64


def deitransform(offset: int, count: int) -> tuple[int, int]:
    """gf_deitransform + gf_dirent_orig_offset: (child index, child d_off)."""
    offset &= _MASK64
    if count == 1:
        return 0, offset
    if offset & _TOP_BIT:
        bits = bits_for(count)
        off_mask = (_MASK64 << bits) & _MASK64
        return offset & ~off_mask & _MASK64, \
            (((offset & ~_TOP_BIT) & off_mask) << _SHIFT_BITS) & _MASK64
    return offset % count, offset // count


# --------------------------------------------------------------------------
# linkto files


def linkto_value(subvol_name: str) -> bytes:
    """trusted.glusterfs.dht.linkto names the data's subvolume, NUL-ended
    (GlusterFS stores it with dict_set_str)."""
    return subvol_name.encode() + b"\0"


def linkto_target(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.rstrip("\0") or None
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace") or None


def is_linkto_mode(mode: int) -> bool:
    """IS_DHT_LINKFILE_MODE: a regular file whose only mode bit is sticky."""
    return (mode & 0o170000) == 0o100000 and (mode & 0o7777) == 0o1000


def is_migration_phase1(mode: int) -> bool:
    """IS_DHT_MIGRATION_PHASE1: a data file being copied (sticky + setgid)."""
    return (mode & 0o170000) == 0o100000 and bool(mode & 0o1000) and bool(mode & 0o2000)


def strip_phase1_flags(mode: int) -> int:
    """DHT_STRIP_PHASE1_FLAGS: hide the migration marks from users."""
    if is_migration_phase1(mode):
        return mode & ~0o3000
    return mode


__all__ = [name for name in dir() if not name.startswith("_")]
