"""cluster/stripe against a local file: random writes, truncates, zerofills,
discards and fallocates at random offsets and sizes - crossing block
boundaries, leaving holes, extending and shrinking - then the same on a
file of the local filesystem (the oracle).  After every step the sizes
agree; reads agree byte for byte, short at the same end; at the end the
whole content agrees and every block sits on its brick where the geometry
puts it.  Both packings, 2 and 4 bricks, with raw fops and through gfapi.

And the project's gfapi model (tests/test_gfapi_model.py: random namespace
operations, errnos, open files) over stripe on 3 bricks, with the bricks'
trees checked against the local one after every step.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import stat
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import invariant

from glusterpy.fops import ROOT_GFID, Fd, GFID, Loc
from glusterpy.gfapi import Volume
from glusterpy.graph import Graph

from test_gfapi_model import FilesystemModel, _tree
from test_stripe import BLOCK, check_placement, stripe_volfile

FALLOC_KEEP_SIZE = 0x01
LINE = 4 * BLOCK                 # one block on each of 4 bricks

# offsets favour block and line boundaries, where pieces change hands
boundaries = st.builds(lambda k, d: max(0, k * BLOCK + d), st.integers(0, 20),
                       st.sampled_from([-1, 0, 1]))
offsets = st.one_of(st.integers(0, 5 * LINE), boundaries)
lengths = st.one_of(st.integers(1, 2 * LINE), st.sampled_from([1, BLOCK - 1, BLOCK, BLOCK + 1]))
ops = st.lists(st.one_of(
    st.tuples(st.just("write"), offsets, lengths, st.integers(0, 2**32)),
    st.tuples(st.just("truncate"), offsets),
    st.tuples(st.just("ftruncate"), offsets),
    st.tuples(st.just("zerofill"), offsets, lengths),
    st.tuples(st.just("discard"), offsets, lengths),
    st.tuples(st.just("fallocate"), st.sampled_from([0, FALLOC_KEEP_SIZE]), offsets, lengths),
    st.tuples(st.just("read"), offsets, lengths),
), min_size=1, max_size=14)

MODEL_SETTINGS = settings(max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])


class LocalFile:
    """The oracle: the same operations on a file of the local filesystem."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def size(self):
        return os.fstat(self.fd).st_size

    def apply(self, op):
        kind = op[0]
        if kind == "write":
            _, offset, length, seed = op
            os.pwrite(self.fd, payload(seed, length), offset)
        elif kind in ("truncate", "ftruncate"):
            os.ftruncate(self.fd, op[1])
        elif kind == "zerofill":       # FALLOC_FL_ZERO_RANGE: zeros, and the file grows
            os.pwrite(self.fd, bytes(op[2]), op[1])
        elif kind == "discard":        # a hole punched inside the file, the size kept
            end = min(op[1] + op[2], self.size())
            if end > op[1]:
                os.pwrite(self.fd, bytes(end - op[1]), op[1])
        elif kind == "fallocate":
            _, mode, offset, length = op
            if not mode & FALLOC_KEEP_SIZE and offset + length > self.size():
                os.ftruncate(self.fd, offset + length)
        elif kind == "read":
            return os.pread(self.fd, op[2], op[1])

    def content(self):
        return os.pread(self.fd, self.size() + 1, 0)

    def close(self):
        os.close(self.fd)


def payload(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


# -- raw fops on the top translator ------------------------------------------------

@pytest.fixture(scope="module")
def brick_sets(tmp_path_factory):
    """Bricks for each (count, packing), made once: a graph started on
    bricks that exist takes milliseconds, so every example gets its own."""
    root = tmp_path_factory.mktemp("stripe-model")
    return {(n, c): root / f"{n}-{'coalesced' if c else 'holes'}"
            for n in (2, 4) for c in (True, False)}


_names = itertools.count()


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "with-holes"])
@MODEL_SETTINGS
@given(bricks=st.sampled_from([2, 4]), steps=ops)
async def test_raw_fops_match_a_local_file(brick_sets, tmp_path, coalesce, bricks, steps):
    root = brick_sets[(bricks, coalesce)]
    name = f"f{next(_names)}"
    graph = Graph.from_text(stripe_volfile(root, bricks, coalesce))
    local = LocalFile(tmp_path / name)
    try:
        async with graph.running():
            assert await graph.wait_child_up(5)
            top = graph.top
            fd = Fd(flags=os.O_RDWR)
            made = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                                    os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644, 0, fd,
                                    {"gfid-req": GFID.random()})
            loc = Loc(path=f"/{name}", gfid=made.iatt.gfid, pargfid=ROOT_GFID, name=name)
            for step in steps:
                expected = local.apply(step)
                kind = step[0]
                if kind == "write":
                    _, offset, length, seed = step
                    reply = await top.writev(fd, payload(seed, length), offset, 0, None)
                    assert reply.count == length
                    assert reply.postbuf.size == local.size(), step
                elif kind == "truncate":
                    assert (await top.truncate(loc, step[1], None)).postbuf.size == step[1]
                elif kind == "ftruncate":
                    assert (await top.ftruncate(fd, step[1], None)).postbuf.size == step[1]
                elif kind == "zerofill":
                    reply = await top.zerofill(fd, step[1], step[2], None)
                    assert reply.postbuf.size == local.size(), step
                elif kind == "discard":
                    reply = await top.discard(fd, step[1], step[2], None)
                    assert reply.postbuf.size == local.size(), step
                elif kind == "fallocate":
                    reply = await top.fallocate(fd, step[1], step[2], step[3], None)
                    assert reply.postbuf.size == local.size(), step
                else:
                    got = await top.readv(fd, step[2], step[1], 0, None)
                    assert bytes(got.data) == expected, step
                assert (await top.fstat(fd, None)).iatt.size == local.size(), step
            content = local.content()
            got = await top.readv(fd, len(content) + BLOCK, 0, 0, None)
            assert bytes(got.data) == content
            assert (await top.stat(loc, None)).iatt.size == len(content)
            await top.release(fd, None)
        check_placement([root / f"brick{i}" for i in range(bricks)], name, content,
                        BLOCK, coalesce)
    finally:
        local.close()


# -- the same through gfapi -------------------------------------------------------------

@pytest.fixture(scope="module", params=[(2, True), (4, True), (2, False), (4, False)],
                ids=["2-coalesced", "4-coalesced", "2-with-holes", "4-with-holes"])
def volume(request, tmp_path_factory):
    bricks, coalesce = request.param
    root = tmp_path_factory.mktemp("stripe-gfapi")
    volfile = root / "stripe.vol"
    volfile.write_text(stripe_volfile(root, bricks, coalesce))
    vol = Volume.from_volfile(volfile)
    yield vol, root, bricks, coalesce
    vol.umount()


@settings(MODEL_SETTINGS, max_examples=30)
@given(steps=ops)
def test_gfapi_matches_a_local_file(volume, tmp_path_factory, steps):
    vol, root, bricks, coalesce = volume
    name = f"g{next(_names)}"
    local = LocalFile(root / f"local-{name}")
    try:
        with vol.open(f"/{name}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644) as f:
            for step in steps:
                expected = local.apply(step)
                kind = step[0]
                if kind == "write":
                    assert f.pwrite(payload(step[3], step[2]), step[1]) == step[2]
                elif kind == "truncate":
                    vol.truncate(f"/{name}", step[1])
                elif kind == "ftruncate":
                    f.ftruncate(step[1])
                elif kind == "zerofill":
                    f.zerofill(step[1], step[2])
                elif kind == "discard":
                    f.discard(step[1], step[2])
                elif kind == "fallocate":
                    f.fallocate(step[1], step[2], step[3])
                else:
                    assert f.pread(step[2], step[1]) == expected, step
                assert f.fstat().st_size == local.size(), step
            content = local.content()
            assert f.pread(len(content) + BLOCK, 0) == content
        assert vol.stat(f"/{name}").st_size == len(content)
        with vol.fopen(f"/{name}", "rb") as f:
            assert f.read() == content
        check_placement([root / f"brick{i}" for i in range(bricks)], name, content,
                        BLOCK, coalesce)
        vol.unlink(f"/{name}")
    finally:
        local.close()
        os.unlink(local.path)


# -- the gfapi namespace model over stripe -------------------------------------------

class StripeFilesystemModel(FilesystemModel):
    """test_gfapi_model's machine on a 3-brick coalesced stripe.  Its files
    stay within the first block, so brick 0 holds the local tree exactly,
    and the other bricks hold its directories and regular files - empty
    pieces - and nothing else (symlinks and fifos live on brick 0 only)."""

    BRICKS = 3
    _shared: dict = {}

    @classmethod
    def _volume(cls):
        if "stripe" not in cls._shared:
            tmp = tempfile.mkdtemp(prefix="stripe-model-")
            volfile = os.path.join(tmp, "stripe.vol")
            with open(volfile, "w") as f:
                f.write(stripe_volfile(tmp, cls.BRICKS, coalesce=True))
            cls._shared["stripe"] = (Volume.from_volfile(volfile), tmp,
                                     os.path.join(tmp, "brick0"), [0])
        return cls._shared["stripe"]

    @invariant()
    def same_tree(self):
        local = _tree(self.local.root)
        assert _tree(self.brick, skip_glusterfs=True) == local
        run = os.path.relpath(self.brick, os.path.join(self.brick, ".."))
        root = os.path.dirname(os.path.dirname(self.brick))
        for i in range(1, self.BRICKS):
            piece_tree = _tree(os.path.join(root, f"brick{i}", run), skip_glusterfs=True)
            assert piece_tree == {
                name: (kind, mode, b"" if kind == stat.S_IFREG else None)
                for name, (kind, mode, _) in local.items()
                if kind in (stat.S_IFREG, stat.S_IFDIR)}


@pytest.fixture(scope="module", autouse=True)
def _unmount_stripe_model():
    yield
    for vol, tmp, _, _ in StripeFilesystemModel._shared.values():
        vol.umount()
        shutil.rmtree(tmp, ignore_errors=True)
    StripeFilesystemModel._shared.clear()


TestGfapiModelOverStripe = StripeFilesystemModel.TestCase
TestGfapiModelOverStripe.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
