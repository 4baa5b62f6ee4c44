"""Model-based test: random file operations through gfapi on replica 3,
against a local directory.

The rules, the oracle and the comparison of results and errnos are those of
test_gfapi_model.FilesystemModel; the volume here is cluster/replicate over
three brick stacks (posix -> locks -> index) in one graph, with GlusterFS's
replica-3 defaults (auto quorum, eager locking, delayed post-op).  At the
end of each example every one of the three bricks must hold exactly what
the local directory holds, and no changelog may be left pending.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings

from glusterpy.gfapi import Volume

from replicate_support import afr_xattrs, index_entries, local_volfile
from test_gfapi_model import FilesystemModel, _tree


class ReplicaModel(FilesystemModel):
    """FilesystemModel on replica 3; each brick is compared with the oracle."""

    VOLFILE = "replica-3"
    _shared: dict = {}

    @classmethod
    def _volume(cls):
        if cls.VOLFILE not in cls._shared:
            tmp = tempfile.mkdtemp(prefix="replica-model-")
            bricks = []
            for i in range(3):
                b = os.path.join(tmp, f"b{i}")
                os.mkdir(b)
                bricks.append(b)
            volfile = os.path.join(tmp, "model.vol")
            with open(volfile, "w") as f:
                f.write(local_volfile([Path(b) for b in bricks]))
            vol = Volume.from_volfile(volfile)
            cls._shared[cls.VOLFILE] = (vol, tmp, bricks, [0])
        vol, tmp, bricks, counter = cls._shared[cls.VOLFILE]
        return vol, tmp, bricks[0], counter

    def teardown(self):
        try:
            self.local.close_all()
            self.remote.close_all()
            local = _tree(self.local.root)
        finally:
            shutil.rmtree(self.local.root, ignore_errors=True)
        _, tmp, bricks, _ = self._shared[self.VOLFILE]
        name = os.path.basename(self.brick)
        for b in bricks:
            top = os.path.join(b, name)
            assert _tree(top) == local, f"brick {b} differs from the local directory"
            for dirpath, dirnames, filenames in os.walk(top):
                for entry in filenames + dirnames + ["."]:
                    p = os.path.join(dirpath, entry)
                    if os.path.islink(p):
                        continue
                    for key, value in afr_xattrs(p).items():
                        assert value == bytes(12), f"{p}: {key} left at {value.hex()}"
            assert index_entries(Path(b), "xattrop") == set()


def teardown_module():
    for vol, tmp, _, _ in ReplicaModel._shared.values():
        vol.umount()
        shutil.rmtree(tmp, ignore_errors=True)
    ReplicaModel._shared.clear()


TestReplica3AgainstLocal = ReplicaModel.TestCase
TestReplica3AgainstLocal.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
