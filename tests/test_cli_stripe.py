"""Stripe volumes made with the CLI (issue 7): `stripe N`, `stripe N replica M`,
and several stripe sets under distribute - each written and read back over
the network through gfapi, with the pieces checked on the bricks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")

BLOCK = 128 * 1024


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        yield d


def stripe_index(path: Path, volume: str) -> int | None:
    """The stripe-index xattr stripe wrote on one piece (None: no piece)."""
    for key in os.listxattr(path):
        if key.startswith("trusted.") and key.endswith(".stripe-index"):
            return int(os.getxattr(path, key).rstrip(b"\0"))
    return None


def write_and_check(d, vol: str, name: str, size: int) -> bytes:
    data = os.urandom(size)
    with Volume("127.0.0.1", vol, port=d.port) as v:
        with v.fopen(f"/{name}", "wb") as f:
            f.write(data)
        assert v.stat(f"/{name}").st_size == size
        with v.fopen(f"/{name}", "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    return data


@pytest.mark.parametrize("layout,count,expect_type", [
    (["stripe", "2"], 2, "Stripe"),
    (["stripe", "2", "replica", "2"], 4, "Striped-Replicate"),
    (["stripe", "2"], 4, "Distributed-Stripe"),
])
def test_stripe_volumes_from_the_cli(daemon, tmp_path, layout, count, expect_type):
    d = daemon
    paths = [tmp_path / f"b{i}" for i in range(count)]
    d.ok("volume", "create", "sv", *layout, *[f"127.0.0.1:{p}" for p in paths])
    info = d.ok("volume", "info", "sv").out
    assert f"Type: {expect_type}" in info, info
    d.ok("volume", "start", "sv")
    names = [f"file{i}" for i in range(6)]
    contents = {n: write_and_check(d, "sv", n, 5 * BLOCK + 1234) for n in names}
    d.ok("volume", "stop", "sv", "--mode=script")

    stripe = int(layout[1])
    replica = int(layout[layout.index("replica") + 1]) if "replica" in layout else 1
    per_set = stripe * replica
    sets = [paths[i:i + per_set] for i in range(0, count, per_set)]
    for name, data in contents.items():
        holding = [s for s in sets if any((p / name).exists() for p in s)]
        assert len(holding) == 1, f"{name} is on {len(holding)} stripe sets"
        bricks = holding[0]
        # bricks of a stripe set, in order; replicas of a piece are adjacent
        pieces = [bricks[i * replica:(i + 1) * replica] for i in range(stripe)]
        for index, replicas in enumerate(pieces):
            blobs = {(r / name).read_bytes() for r in replicas}
            assert len(blobs) == 1, f"replicas of piece {index} of {name} differ"
            assert stripe_index(replicas[0] / name, "sv") == index
        # block k of the file lives on piece k % stripe, coalesced
        for k in range(0, (len(data) + BLOCK - 1) // BLOCK):
            piece = (pieces[k % stripe][0] / name).read_bytes()
            offset = (k // stripe) * BLOCK
            assert piece[offset:offset + BLOCK] == data[k * BLOCK:(k + 1) * BLOCK], (name, k)
