"""glusterd/model.py: the typed Volume and Brick records read and write the
volume documents glusterd/store.py keeps, key for key.

The fixtures in tests/data/glusterd/ were written by glusterpyd's store as
it was before the records existed (commit 787e53a) (ops.prepare_* then store.write_json): a
replica 2 arbiter 1 volume, started, with options, a stopped profile and a
remove-brick task, and a device lv volume whose bricks have metadata
directories.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from glusterpy.glusterd import ops
from glusterpy.glusterd.model import Brick, Volume
from glusterpy.glusterd.store import Store, read_json

DATA = Path(__file__).resolve().parent / "data" / "glusterd"
FIXTURES = sorted(DATA.glob("info-*.json"))


def _as_stored(doc: dict) -> str:
    # what store.write_json writes
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_there_are_fixtures():
    assert {p.name for p in FIXTURES} >= {"info-replicate.json", "info-device-lv.json"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_a_stored_volume_reads_and_writes_back_byte_for_byte(path):
    text = path.read_text()
    doc = json.loads(text)
    vol = Volume.from_json(doc)
    assert vol.to_json() == doc          # what is written loads as before, in dict code
    assert _as_stored(vol.to_json()) == text


def test_the_records_are_typed():
    vol = Volume.from_json(read_json(DATA / "info-replicate.json"))
    assert (vol.name, vol.status, vol.replica, vol.arbiter, vol.stripe) == \
        ("vms", "Started", 3, 1, 1)
    assert all(isinstance(b, Brick) for b in vol.bricks)
    assert [b.arbiter for b in vol.bricks] == [None, None, True, None, None, True]
    assert vol.profile is False and vol.device is None
    assert vol.options["auth.allow"] == "10.0.0.*"
    assert vol.tasks["remove-brick"]["indices"] == [3, 4, 5]
    lv = Volume.from_json(read_json(DATA / "info-device-lv.json"))
    assert lv.device == "lv" and lv.profile is None
    assert [b.metadata for b in lv.bricks] == ["/var/lib/glusterpy/bd/images/vg0",
                                               "/var/lib/glusterpy/bd/images/vg1"]


def test_a_new_volume_has_the_keys_a_created_document_had(tmp_path):
    cluster = ops.Cluster("me", ["127.0.0.1"], {}, {}, tmp_path)
    vol = ops.prepare_create(cluster, {"name": "v", "replica": 2, "arbiter": 1, "bricks": [
        f"127.0.0.1:/bricks/b{i}" for i in range(3)]})
    doc = vol.to_json()
    # in the order ops.prepare_create wrote them when it made dicts
    assert list(doc) == ["name", "id", "status", "replica", "arbiter", "stripe",
                         "transport", "bricks", "options", "version", "tasks"]
    assert [list(b) for b in doc["bricks"]] == [["host", "path", "node", "port"]] * 2 + \
        [["host", "path", "node", "port", "arbiter"]]
    lv = ops.prepare_create(cluster, {"name": "lv", "device": "lv",
                                      "bricks": ["127.0.0.1:/vg0"]}).to_json()
    assert list(lv)[-1] == "device" and lv["device"] == "lv"
    assert Volume.from_json(doc) == vol


def test_keys_it_does_not_know_are_kept():
    doc = read_json(DATA / "info-device-lv.json")
    doc["snapshot-count"] = 3
    doc["bricks"][0]["fs-type"] = "xfs"
    vol = Volume.from_json(doc)
    assert vol.extra == {"snapshot-count": 3} and vol.bricks[0].extra == {"fs-type": "xfs"}
    assert vol.to_json() == doc


def test_an_older_document_gets_only_the_defaults_its_readers_assumed():
    doc = {"name": "old", "id": str(uuid.uuid4()), "status": "Stopped", "replica": 1,
           "arbiter": 0, "stripe": 1, "transport": "tcp", "options": {}, "version": 4,
           "bricks": [{"host": "h", "path": "/bricks/a", "node": "u", "port": 49152}]}
    assert Volume.from_json(doc).to_json() == dict(doc, tasks={})


def test_the_store_round_trip(tmp_path):
    store = Store(tmp_path)
    store.open()
    vol = Volume.from_json(read_json(DATA / "info-replicate.json"))
    store.save_volume(vol, {})
    assert (tmp_path / "vols" / "vms" / "info.json").read_text() == \
        (DATA / "info-replicate.json").read_text()
    assert store.volumes()["vms"] == vol
