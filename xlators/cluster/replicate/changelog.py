"""AFR's changelog arithmetic and decision rules, without I/O.

cluster/replicate (the translator) and its self-heal (heal_*.py) keep their
bookkeeping in extended attributes on every brick, in GlusterFS's format:

* ``trusted.afr.<volume>-client-<N>`` on brick *i* (the *pending* key of
  child N, named by the ``afr-pending-xattr`` option) is 12 bytes: three
  big-endian signed 32-bit counters of operations that brick *i* saw
  succeed but that may have failed on child N - data, metadata and entry,
  in that order (afr.h: "trusted.afr.volume = [x y z]").
* ``trusted.afr.dirty`` (``afr-dirty-xattr``) is the same three counters
  for "an operation is in flight here": the pre-op adds 1, the post-op
  subtracts it again.

Bricks change the counters only by xattrop ADD_ARRAY, so the values here
are deltas that storage/posix adds to what is stored.  Everything in this
module is a pure function of replies already received - the matrix of who
accuses whom, which bricks are sources and sinks (afr_selfheal_find_direction),
which are readable (afr_readables_fill), quorum (afr_has_quorum), the
favourite-child policies and the read-hash (SuperFastHash) - so it is
tested without bricks, and the translator and the heal code share it.
"""

from __future__ import annotations

import errno
import stat as _stat
import struct
from dataclasses import dataclass, field
from typing import Sequence

from glusterpy.fops import FopError, Iatt

# --------------------------------------------------------------------------
# Names and numbers (afr.h, glusterfs.h)

#: changelog slots (afr_index_for_transaction_type)
DATA, METADATA, ENTRY = 0, 1, 2
#: transaction types; a rename is an entry transaction on two parents
DATA_TXN, METADATA_TXN, ENTRY_TXN, RENAME_TXN = "data", "metadata", "entry", "rename"
SLOT_OF = {DATA_TXN: DATA, METADATA_TXN: METADATA, ENTRY_TXN: ENTRY, RENAME_TXN: ENTRY}
NUM_CHANGELOGS = 3
CHANGELOG_SIZE = 4 * NUM_CHANGELOGS
#: "quorum-type auto": more than half, or exactly half including the first
QUORUM_AUTO = -1
#: afr_selfheal_find_direction's pflag bits
PFLAG_PENDING, PFLAG_SBRAIN = 1, 2

_COUNTERS = struct.Struct(">iii")


def encode(counts: Sequence[int]) -> bytes:
    """Three counters as the 12 big-endian bytes a changelog xattr holds;
    values wrap as the brick's 32-bit arithmetic does (hton32(-1) is
    ff ff ff ff)."""
    return b"".join(((c + (1 << 31)) % (1 << 32) - (1 << 31)).to_bytes(4, "big", signed=True)
                    for c in counts)


def decode(value) -> tuple[int, int, int]:
    """The three signed counters of a changelog value (missing trailing
    bytes count as zero, as a shorter stored value does for xattrop)."""
    raw = bytes(value or b"")[:CHANGELOG_SIZE]
    raw += bytes(CHANGELOG_SIZE - len(raw))
    return _COUNTERS.unpack(raw)


def slot_for_type(mode: int) -> int | None:
    """afr_index_from_ia_type: a directory's content is its entries, a
    regular file's is its data; other types have only metadata."""
    if _stat.S_ISDIR(mode):
        return ENTRY
    if _stat.S_ISREG(mode):
        return DATA
    return None


# --------------------------------------------------------------------------
# The dicts AFR sends with xattrop, in GlusterFS's wire order
#
# GlusterFS's dict lists the newest key first, so what afr_set_pending_dict
# builds for client-0..client-N and then the dirty key goes out as dirty,
# client-N .. client-0; the same order is kept here so captures compare
# byte for byte.

def changelog_dict(pending_keys: Sequence[str], rows: Sequence[Sequence[int]] | None = None,
                   dirty_key: str | None = None, dirty: Sequence[int] | None = None,
                   dirty_last: bool = False) -> dict[str, bytes]:
    """The xattrop dict: one 12-byte value per pending key (`rows[i]` the
    counters for child i, zeros when `rows` is None) and, when `dirty_key`
    is given, the dirty counters - first, as a transaction's pre/post-op
    sends them, or last, as self-heal's undo-pending does."""
    n = len(pending_keys)
    rows = rows if rows is not None else [(0, 0, 0)] * n
    out: dict[str, bytes] = {}
    if dirty_key is not None and not dirty_last:
        out[dirty_key] = encode(dirty or (0, 0, 0))
    for i in reversed(range(n)):
        out[pending_keys[i]] = encode(rows[i])
    if dirty_key is not None and dirty_last:
        out[dirty_key] = encode(dirty or (0, 0, 0))
    return out


def add_dicts(a: dict, b: dict, dirty_key: str) -> dict:
    """Two xattrop dicts of ADD_ARRAY counters as one: the brick adds each
    value to what it holds, so one xattrop of the sums is the two in a row
    (the dirty key stays last, as changelog_dict orders it)."""
    out = {}
    for key in [k for k in a if k != dirty_key] + [k for k in b if k not in a and k != dirty_key]:
        out[key] = encode([x + y for x, y in zip(decode(a.get(key)), decode(b.get(key)))])
    if dirty_key in a or dirty_key in b:
        out[dirty_key] = encode([x + y for x, y in zip(decode(a.get(dirty_key)),
                                                       decode(b.get(dirty_key)))])
    return out


def one_slot(slot: int, value: int) -> tuple[int, int, int]:
    counters = [0, 0, 0]
    counters[slot] = value
    return tuple(counters)


def new_entry_rows(pending: Sequence[bool], mode: int, granular_entry_heal: bool
                   ) -> list[tuple[int, int, int]]:
    """afr_mark_pending_changelog: what a new entry's sources record against
    the bricks that missed its creation - metadata always, data for a
    regular file, entry for a directory, plus the data slot of a directory
    as the full-heal marker when granular entry heal is on."""
    slot = slot_for_type(mode)
    rows = []
    for missed in pending:
        counters = [0, 0, 0]
        if missed:
            counters[METADATA] = 1
            if slot is not None:
                counters[slot] = 1
            if _stat.S_ISDIR(mode) and granular_entry_heal:
                counters[DATA] = 1
        rows.append(tuple(counters))
    return rows


# --------------------------------------------------------------------------
# Reading the matrix


def pending_of(xdata: dict | None, key: str, slot: int) -> int:
    if not xdata or key not in xdata:
        return 0
    return decode(xdata[key])[slot]


def extract(xdatas: Sequence[dict | None], pending_keys: Sequence[str], dirty_key: str,
            slot: int) -> tuple[list[int], list[list[int]]]:
    """afr_selfheal_extract_xattr: dirty[i] and matrix[i][j] (what brick i
    holds against child j) for one slot, from each brick's lookup xdata
    (None for a brick that did not answer)."""
    n = len(pending_keys)
    dirty = [0] * n
    matrix = [[0] * n for _ in range(n)]
    for i, xd in enumerate(xdatas):
        if not xd:
            continue
        dirty[i] = pending_of(xd, dirty_key, slot)
        for j in range(n):
            matrix[i][j] = pending_of(xd, pending_keys[j], slot)
    return dirty, matrix


def is_pending_set(xdata: dict | None, pending_keys: Sequence[str], dirty_key: str,
                   slot: int) -> bool:
    """afr_is_pending_set: dirty or any pending counter of `slot` set."""
    if pending_of(xdata, dirty_key, slot):
        return True
    return any(pending_of(xdata, key, slot) for key in pending_keys)


def accused(xdatas: Sequence[dict | None], pending_keys: Sequence[str], slot: int
            ) -> list[bool]:
    """afr_accused_fill: child j is accused when any brick's xattrs hold a
    non-zero `slot` counter against it."""
    out = [False] * len(pending_keys)
    for xd in xdatas:
        if not xd:
            continue
        for j, key in enumerate(pending_keys):
            if pending_of(xd, key, slot):
                out[j] = True
    return out


@dataclass
class Readables:
    """Which children may serve reads of an inode (afr_readables_fill):
    `data` for file content or directory entries, `metadata` for
    attributes and xattrs; `accused` says whether any changelog pointed at
    anyone (a heal may be due)."""

    data: list[bool]
    metadata: list[bool]
    accused: bool = False

    def both(self) -> list[bool]:
        return [d and m for d, m in zip(self.data, self.metadata)]


def readables(iatts: Sequence[Iatt | None], xdatas: Sequence[dict | None],
              pending_keys: Sequence[str], arbiter: int | None = None,
              accuse_small_files: bool = True) -> Readables:
    """The readable children from lookup/refresh replies: a child that did
    not answer is not readable; a child accused by anyone's changelog is
    not readable for that kind; for files also a child whose size is
    smaller than the largest unaccused one (afr_accuse_smallfiles); the
    arbiter never serves data or metadata."""
    n = len(pending_keys)
    data = [True] * n
    metadata = [True] * n
    data_accused = [False] * n
    metadata_accused = [False] * n
    ia_type = None
    for i in range(n):
        if iatts[i] is None:
            data[i] = metadata[i] = False
            continue
        ia_type = iatts[i].type
        slot = ENTRY if _stat.S_ISDIR(iatts[i].mode) else DATA
        for j, flag in enumerate(accused([xdatas[i]], pending_keys, slot)):
            data_accused[j] = data_accused[j] or flag
        for j, flag in enumerate(accused([xdatas[i]], pending_keys, METADATA)):
            metadata_accused[j] = metadata_accused[j] or flag
    if arbiter is not None:
        data[arbiter] = metadata[arbiter] = False
    if accuse_small_files and ia_type is not None and ia_type != _stat.S_IFDIR:
        sizes = [iatts[i].size for i in range(n)
                 if iatts[i] is not None and not data_accused[i]]
        biggest = max(sizes, default=0)
        for i in range(n):
            if iatts[i] is not None and not data_accused[i] and i != arbiter \
                    and iatts[i].size < biggest:
                data_accused[i] = True
    any_accused = False
    for i in range(n):
        if data_accused[i]:
            data[i] = False
            any_accused = True
        if metadata_accused[i]:
            metadata[i] = False
            any_accused = True
    return Readables(data, metadata, any_accused)


# --------------------------------------------------------------------------
# Sources and sinks (afr_selfheal_find_direction and friends)


@dataclass
class Direction:
    """The outcome of inspecting one slot of the matrix."""

    sources: list[bool]
    sinks: list[bool]
    witness: list[int]
    pflag: int = 0
    dirty: list[int] = field(default_factory=list)
    matrix: list[list[int]] = field(default_factory=list)

    @property
    def split_brain(self) -> bool:
        return bool(self.pflag & PFLAG_SBRAIN)


def quorum_needed(child_count: int, quorum_count: int) -> int:
    """afr_get_quorum_count."""
    return child_count // 2 + 1 if quorum_count == QUORUM_AUTO else quorum_count


def has_quorum(subvols: Sequence[bool], quorum_count: int) -> bool:
    """afr_has_quorum: `quorum_count` 0 means no quorum enforcement;
    QUORUM_AUTO needs more than half, or exactly half including the first
    child (the tie-breaker that keeps two halves from both writing)."""
    n = len(subvols)
    up = sum(1 for s in subvols if s)
    if quorum_count == QUORUM_AUTO and up * 2 == n:
        return bool(subvols[0])
    return up >= quorum_needed(n, quorum_count)


def find_direction(xdatas: Sequence[dict | None], valid: Sequence[bool],
                   pending_keys: Sequence[str], dirty_key: str, slot: int,
                   locked_on: Sequence[bool], quorum_count: int = 0) -> Direction:
    """afr_selfheal_find_direction for one slot.

    Every locked child must have answered (else ENOTCONN, as GlusterFS
    treats it like a lock not acquired).  A child accused by a child that
    does not accuse itself is not a source; the sinks are the children the
    sources accuse; with no source at all every locked child is a sink -
    split-brain.  `witness` counts the dirty and self-accusing markers
    (afr-v1 leftovers), the tie-breaker when sources disagree on size.
    """
    n = len(pending_keys)
    dirty, matrix = extract(xdatas, pending_keys, dirty_key, slot)
    pflag = 0
    if any(matrix[i][j] for i in range(n) for j in range(n)):
        pflag |= PFLAG_PENDING
    if sum(1 for v in valid if v) < n:
        raise FopError(errno.ENOTCONN, "not every brick answered")
    self_accused = [bool(matrix[i][i]) for i in range(n)]
    accused_count = [0] * n
    pending = [0] * n
    for i in range(n):
        for j in range(n):
            if matrix[i][j]:
                if not self_accused[i]:
                    accused_count[j] += 1
                if i != j:
                    pending[i] += 1
    sources = [not accused_count[i] and bool(locked_on[i]) for i in range(n)]
    sinks = [False] * n
    for i in range(n):
        if not sources[i] or self_accused[i]:
            continue
        for j in range(n):
            if matrix[i][j]:
                sinks[j] = True
    witness = [0] * n
    for i in range(n):
        if self_accused[i]:
            witness[i] += sum(matrix[i][j] for j in range(n) if j != i)
    if slot in (DATA, METADATA) and not any(sources):
        # afr_selfheal_post_op_failure_accounting: a post-op that failed on
        # a minority leaves children accused by fewer than a quorum
        needed = quorum_needed(n, quorum_count)
        for i in range(n):
            if accused_count[i] < needed and locked_on[i]:
                sources[i] = True
    if not any(sources):
        for i in range(n):
            if locked_on[i]:
                sinks[i] = True
        pflag |= PFLAG_SBRAIN
    if not any(pending):
        for i in range(n):
            if self_accused[i]:
                witness[i] += matrix[i][i]
    else:
        for i in range(n):
            if self_accused[i] and pending[i]:
                witness[i] += matrix[i][i]
    for i in range(n):
        witness[i] += dirty[i]
    return Direction(sources, sinks, witness, pflag, dirty, matrix)


def undo_pending(xdatas: Sequence[dict | None], pending_keys: Sequence[str], dirty_key: str,
                 slot: int, sinks: Sequence[bool], healed_sinks: Sequence[bool],
                 locked_on: Sequence[bool], full_crawl: bool = False
                 ) -> list[tuple[list[tuple[int, int, int]], tuple[int, int, int]] | None]:
    """afr_selfheal_undo_pending: for each locked child, the deltas (rows
    for every pending key, and the dirty counters) that reset what was
    healed and keep accusing a sink that could not be healed.  With
    `full_crawl` (an entry heal that crawled everything) the directory's
    full-heal marker in the data slot is reset too.  None for children
    not locked."""
    n = len(pending_keys)
    dirty, matrix = extract(xdatas, pending_keys, dirty_key, slot)
    full_in = extract(xdatas, pending_keys, dirty_key, DATA)[1] if full_crawl else None
    still_pending = [bool(sinks[i]) and not healed_sinks[i] for i in range(n)]
    out: list = []
    for i in range(n):
        if not locked_on[i]:
            out.append(None)
            continue
        rows = []
        for j in range(n):
            counters = [0, 0, 0]
            if still_pending[j]:
                counters[slot] = 1
                if full_crawl and slot == ENTRY:
                    counters[DATA] = 1
            elif locked_on[j]:
                counters[slot] = -matrix[i][j]
                if full_crawl and slot == ENTRY:
                    counters[DATA] = -full_in[i][j]
            rows.append(tuple(counters))
        d = [0, 0, 0]
        if not still_pending[i]:
            d[slot] = -dirty[i]
        out.append((rows, tuple(d)))
    return out


# --------------------------------------------------------------------------
# Choosing among sources


def largest_file(sources: list[bool], iatts: Sequence[Iatt | None]) -> None:
    """afr_mark_largest_file_as_source (in place)."""
    size = 0
    for i, src in enumerate(sources):
        if not src:
            continue
        if iatts[i] is None:
            sources[i] = False
            continue
        size = max(size, iatts[i].size)
    for i, src in enumerate(sources):
        if src and iatts[i].size < size:
            sources[i] = False


def latest_mtime(sources: list[bool], iatts: Sequence[Iatt | None]) -> None:
    """afr_mark_latest_mtime_file_as_source (in place)."""
    best = (0, 0)
    for i, src in enumerate(sources):
        if not src:
            continue
        if iatts[i] is None:
            sources[i] = False
            continue
        best = max(best, (iatts[i].mtime, iatts[i].mtime_nsec))
    for i, src in enumerate(sources):
        if src and (iatts[i].mtime, iatts[i].mtime_nsec) < best:
            sources[i] = False


def biggest_witness(sources: list[bool], witness: Sequence[int]) -> None:
    """afr_mark_biggest_witness_as_source (in place)."""
    top = max((witness[i] for i, s in enumerate(sources) if s), default=0)
    for i, src in enumerate(sources):
        if src and witness[i] < top:
            sources[i] = False


def newest_ctime(sources: list[bool], iatts: Sequence[Iatt | None]) -> None:
    """afr_mark_newest_file_as_source: keep exactly one source, the last
    with the greatest ctime seconds."""
    chosen, best = -1, -1
    for i, src in enumerate(sources):
        if src and iatts[i] is not None and best <= iatts[i].ctime:
            chosen, best = i, iatts[i].ctime
    for i in range(len(sources)):
        sources[i] = i == chosen


def size_mismatch(sources: Sequence[bool], iatts: Sequence[Iatt | None],
                  arbiter: int | None) -> bool:
    """afr_does_size_mismatch among the sources (an empty arbiter does
    not count)."""
    sizes = {iatts[i].size for i, s in enumerate(sources)
             if s and iatts[i] is not None and not (i == arbiter and iatts[i].size == 0)}
    return len(sizes) > 1


def fav_by_size(iatts: Sequence[Iatt | None]) -> int:
    """afr_sh_fav_by_size: the biggest file, -1 on a tie or a directory."""
    fav, top = -1, 0
    for i, ia in enumerate(iatts):
        if ia is None:
            continue
        if ia.is_dir:
            return -1
        if ia.size > top:
            fav, top = i, ia.size
        elif ia.size == top:
            fav = -1
    return fav


def fav_by_time(iatts: Sequence[Iatt | None], which: str) -> int:
    """afr_sh_fav_by_mtime / _ctime: the latest (first one on a tie)."""
    fav, top = -1, (0, 0)
    for i, ia in enumerate(iatts):
        if ia is None:
            continue
        t = (getattr(ia, which), getattr(ia, which + "_nsec"))
        if t > top:
            fav, top = i, t
    return fav


def fav_by_majority(iatts: Sequence[Iatt | None]) -> int:
    """afr_sh_fav_by_majority: a copy whose mtime and size more than half
    of the children share."""
    n = len(iatts)
    for i, ia in enumerate(iatts):
        if ia is None:
            continue
        votes = sum(1 for other in iatts if other is not None and
                    other.mtime == ia.mtime and other.size == ia.size)
        if votes > n // 2:
            return i
    return -1


FAVORITE_CHILD_POLICIES = ("none", "size", "ctime", "mtime", "majority")


def favorite_child(policy: str, iatts: Sequence[Iatt | None]) -> int:
    """afr_sh_get_fav_by_policy: -1 unless every child answered and the
    policy names one."""
    if any(ia is None for ia in iatts):
        return -1
    if policy == "size":
        return fav_by_size(iatts)
    if policy == "ctime":
        return fav_by_time(iatts, "ctime")
    if policy == "mtime":
        return fav_by_time(iatts, "mtime")
    if policy == "majority":
        return fav_by_majority(iatts)
    return -1


# --------------------------------------------------------------------------
# The read-hash (libglusterfs hashfn.c SuperFastHash)


def _signed_char(b: int) -> int:
    return b - 256 if b > 127 else b


def super_fast_hash(data: bytes) -> int:
    """Paul Hsieh's SuperFastHash as GlusterFS computes it (chars are
    signed on the platforms GlusterFS runs on)."""
    m = 0xFFFFFFFF
    length = len(data)
    if length <= 1:
        return 1
    h = length
    rem = length & 3
    pos = 0
    for _ in range(length >> 2):
        h = (h + int.from_bytes(data[pos:pos + 2], "little")) & m
        tmp = ((int.from_bytes(data[pos + 2:pos + 4], "little") << 11) ^ h) & m
        h = ((h << 16) ^ tmp) & m
        pos += 4
        h = (h + (h >> 11)) & m
    if rem == 3:
        h = (h + int.from_bytes(data[pos:pos + 2], "little")) & m
        h ^= (h << 16) & m
        h ^= (_signed_char(data[pos + 2]) << 18) & m
        h = (h + (h >> 11)) & m
    elif rem == 2:
        h = (h + int.from_bytes(data[pos:pos + 2], "little")) & m
        h ^= (h << 11) & m
        h = (h + (h >> 17)) & m
    elif rem == 1:
        h = (h + _signed_char(data[pos])) & m
        h ^= (h << 10) & m
        h = (h + (h >> 1)) & m
    h ^= (h << 3) & m
    h = (h + (h >> 5)) & m
    h ^= (h << 4) & m
    h = (h + (h >> 17)) & m
    h ^= (h << 25) & m
    h = (h + (h >> 6)) & m
    return h


def pathinfo_host(pathinfo: str) -> str | None:
    """get_pathinfo_host: the text between the first and the last ':' of a
    brick's pathinfo (``<POSIX(/brick):host:/brick/path>``)."""
    first, last = pathinfo.find(":"), pathinfo.rfind(":")
    if first < 0 or first == last:
        return None
    return pathinfo[first + 1:last]


def higher_errno(old: int, new: int) -> int:
    """afr_higher_errno: ENODATA > ENOENT > ESTALE > ENOSPC > the rest."""
    for e in (errno.ENODATA, errno.ENOENT, errno.ESTALE, errno.ENOSPC):
        if old == e or new == e:
            return e
    return new


def final_errno(errors: Sequence[int]) -> int:
    """afr_final_errno over the failed replies."""
    out = 0
    for e in errors:
        out = higher_errno(out, e)
    return out
