"""A heal as a task (issue 20's Tasks page): glusterd/heal_task.py.

The arithmetic first, on counts given by hand (what heal info would say at
each sample): healed, progress, the rate over the window, time left, and
when the rate is not known.  Then a real glusterpyd with a replica 3
volume: with the self-heal daemon off a brick is killed, files are written
while it is down, and it comes back - the task shows the pending entries,
"waiting"; turned on, the daemon heals them and the task ends "completed"
with every entry healed.  A `volume heal` from the CLI on a clean volume
is a task too, completed at its first sample.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from glusterpy.gfapi import Volume
from glusterpy.glusterd import model
from glusterpy.glusterd.heal_task import RATE_WINDOW, HealTask
from test_glusterd_support import running_daemon, wait_for

VOL = model.Volume(name="v", id="", bricks=[model.Brick(host="h", path=f"/b{i}", node="n")
                                            for i in range(3)])
B = [f"h:/b{i}" for i in range(3)]


def test_task_arithmetic():
    t = HealTask("self-heal daemon", 0.0)
    t.observe({B[0]: 10, B[1]: 10, B[2]: 0}, 0.0)
    doc = t.document(VOL, True, 0.0)
    agg = doc["aggregate"]
    assert (agg["status"], agg["pending"], agg["healed"], agg["progress"]) == \
        ("in progress", 20, 0, 0.0)
    assert agg["rate"] is None and agg["time-left"] is None    # one sample: not known
    assert doc["task"]["started-by"] == "self-heal daemon"
    # 2 s later 4 healed on each; one brick gained 2 new entries in between
    t.observe({B[0]: 6, B[1]: 6, B[2]: 2}, 2.0)
    doc = t.document(VOL, True, 2.0)
    agg = doc["aggregate"]
    assert (agg["pending"], agg["healed"]) == (14, 8)
    assert agg["progress"] == pytest.approx(8 / 22)
    assert agg["rate"] == pytest.approx(4.0) and agg["time-left"] == pytest.approx(14 / 4)
    rows = {r["brick"]: r for r in doc["nodes"]}
    assert rows[B[0]]["rate"] == pytest.approx(2.0) and rows[B[0]]["time-left"] == 3.0
    assert rows[B[2]]["rate"] is None and rows[B[2]]["time-left"] is None
    assert rows[B[2]]["status"] == "in progress" and rows[B[2]]["progress"] == 0.0
    # a brick that does not answer keeps its count and says so
    t.observe({B[0]: 6, B[1]: None, B[2]: 2}, 3.0)
    rows = {r["brick"]: r for r in t.document(VOL, True, 3.0)["nodes"]}
    assert rows[B[1]]["status"] == "not connected" and rows[B[1]]["pending"] == 6
    # nothing healed for a whole window: the rate is no longer known
    t.observe({B[0]: 6, B[1]: 6, B[2]: 2}, 3.0 + RATE_WINDOW + 1)
    t.observe({B[0]: 6, B[1]: 6, B[2]: 2}, 3.0 + RATE_WINDOW + 2)
    agg = t.document(VOL, False, 3.0 + RATE_WINDOW + 2)["aggregate"]
    assert agg["rate"] is None and agg["time-left"] is None and agg["status"] == "waiting"
    # done: every brick answered 0
    t.observe({B[0]: 0, B[1]: 0, B[2]: 0}, 100.0)
    doc = t.document(VOL, True, 120.0)
    assert doc["aggregate"]["status"] == "completed" and doc["aggregate"]["progress"] == 1.0
    assert doc["aggregate"]["healed"] == 22 and doc["aggregate"]["time-left"] == 0.0
    assert doc["aggregate"]["run-time"] == 100.0
    assert all(r["status"] == "completed" for r in doc["nodes"])


pytestmark_live = pytest.mark.skipif(os.geteuid() != 0,
                                     reason="bricks need trusted.* xattrs (root)")


def task_doc(d, name: str) -> dict:
    status, doc = d.api("GET", f"/api/v1/volumes/{name}/heal/task")
    assert status == 200, doc
    return doc


def brick_pid(d, name: str, i: int) -> int | None:
    return d.ok("volume", "status", name, "--json").json()["volumes"][0]["bricks"][i]["pid"]


def leave_pending(d, name: str) -> dict:
    """Turn the self-heal daemon of replica 3 volume `name` off, kill -9
    its third brick and write files while it is down (glusterpyd starts it
    again within a second or two); the heal task once entries are pending."""
    d.ok("volume", "heal", name, "disable")      # so what is pending stays
    with Volume("127.0.0.1", name, port=d.port) as vol:
        for attempt in range(3):
            os.kill(brick_pid(d, name, 2), signal.SIGKILL)
            for k in range(40):
                try:
                    with vol.fopen(f"/f{attempt}-{k}", "wb") as f:
                        f.write(b"x" * 1000)
                except OSError:
                    pass
            wait_for(lambda: brick_pid(d, name, 2), 30, "brick 2 restarted")
            time.sleep(2.1)     # a fresh sample
            doc = task_doc(d, name)
            if doc["task"] is not None and doc["aggregate"]["pending"] > 0:
                return doc
    raise AssertionError(f"no entry pending after three kills: {doc}")


@pytestmark_live
def test_heal_task_from_pending_to_completed(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        status, doc = d.api("GET", "/api/v1/volumes/nosuch/heal/task")
        assert (status, doc) == (404, {"error": "Volume nosuch does not exist"})
        d.ok("volume", "create", "dv", f"127.0.0.1:{tmp_path / 'd0'}")
        d.ok("volume", "start", "dv")
        status, doc = d.api("GET", "/api/v1/volumes/dv/heal/task")
        assert status == 400 and "not of type replicate" in doc["error"], doc

        d.ok("volume", "create", "hv", "replica", "3",
             *[f"127.0.0.1:{tmp_path / f'h{i}'}" for i in range(3)])
        d.ok("volume", "start", "hv")
        assert task_doc(d, "hv")["task"] is None     # nothing pending, nothing asked
        doc = leave_pending(d, "hv")
        agg = doc["aggregate"]
        assert agg["status"] == "waiting" and "disabled" in doc["note"], doc
        assert doc["task"]["started-by"] == "self-heal daemon"
        rows = {r["brick"]: r for r in doc["nodes"]}
        assert len(rows) == 3 and rows[f"127.0.0.1:{tmp_path / 'h0'}"]["pending"] > 0, rows
        assert agg["rate"] is None and agg["time-left"] is None    # nothing healed yet
        first_id = doc["task"]["id"]

        d.ok("volume", "heal", "hv", "enable")
        d.ok("volume", "heal", "hv")      # the CLI's request, noted on the task
        doc = wait_for(lambda: (t := task_doc(d, "hv"))["aggregate"]["status"] == "completed"
                       and t, 60, "the heal to complete")
        agg = doc["aggregate"]
        assert doc["task"]["id"] == first_id and agg["pending"] == 0 and agg["healed"] > 0
        assert agg["progress"] == 1.0 and agg["time-left"] == 0.0, agg
        assert [r["op"] for r in doc["task"]["requests"]] == ["index"]
        assert all(r["status"] == "completed" for r in doc["nodes"]), doc["nodes"]

        # `volume heal` from the CLI on a clean volume: a task, done at once
        d.ok("volume", "heal", "hv", "full")
        doc = task_doc(d, "hv")
        assert doc["task"]["id"] != first_id and doc["task"]["started-by"] == \
            "volume heal hv full"
        assert doc["aggregate"]["status"] == "completed", doc
