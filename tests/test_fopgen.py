"""The per-fop methods written out by glusterpy.fopgen: checked in as
rendered now, the only way product code makes methods from templates (no
exec), and a traceback through one shows its source line."""

from __future__ import annotations

import errno
import re
import traceback
from pathlib import Path

import pytest

from glusterpy import fopgen, fops
from glusterpy.fops import Fd, FopError
from glusterpy.xlator import Translator, overridden_fops

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", fopgen.families(), ids=lambda f: f.module)
def test_generated_modules_are_what_their_family_renders(family):
    path = fopgen.path_of(family)
    assert path.exists(), f"{path} is missing: run python -m glusterpy.fopgen"
    assert path.read_text() == fopgen.render(family), \
        f"{path} is stale: run python -m glusterpy.fopgen"


def test_every_family_is_installed_on_its_class():
    families = fopgen.families()
    assert {f.owner for f in families} >= {"Translator", "IoStats", "ProtocolClient", "Utime",
                                          "IoThreads", "DelayGen", "Stripe"}
    from xlators.performance.io_threads import IoThreads
    from xlators.debug.io_stats import IoStats
    assert IoThreads.readv.__module__ == "xlators.performance.io_threads_fops"
    assert IoThreads.readv.__qualname__ == "IoThreads.readv"
    assert IoStats.lookup.__code__.co_filename.endswith("xlators/debug/io_stats_fops.py")
    # the defaults are marked, so a translator's own fops are told apart
    assert overridden_fops(Translator) == []
    assert set(overridden_fops(IoStats)) == set(fops.FOP_NAMES)


def test_no_exec_in_product_code():
    found = [f"{p.relative_to(ROOT)}:{n}" for top in ("glusterpy", "xlators", "gluster")
             for p in sorted((ROOT / top).rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"(?<![\w.])exec\(", line)]
    assert found == []


class _Failing(Translator):
    async def readv(self, fd, size, offset, flags, xdata=None):
        raise FopError(errno.EIO, "the disk said no")


async def test_a_traceback_through_a_generated_fop_shows_its_line():
    top = Translator("top", children=[_Failing("bottom")])
    with pytest.raises(FopError) as info:
        await top.readv(Fd(None, 0), 4096, 0, 0)
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = [f for f in frames if f.filename.endswith("glusterpy/xlator_fops.py")]
    assert generated and generated[0].name == "readv"
    assert generated[0].line == "return await self.first_child.readv(fd, size, offset, flags, xdata)"
