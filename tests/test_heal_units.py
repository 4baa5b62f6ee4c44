"""The self-heal parts that need no process: volgen's brick and shd graphs
against glusterd 10's own volfiles, and the `volume heal` grammar and
output formats (glfsheal's and the gluster CLI's)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from glusterpy import volfile as vf
from glusterpy.cli import heal_cmd
from glusterpy.glusterd import volgen
from glusterpy.glusterd.model import Volume
from glusterpy.graph import Graph

SAMPLES = Path("/work/shared/glusterfs10-samples/volfiles")

def rep3(**kw) -> Volume:
    vol = {"name": "rep3", "id": str(uuid.uuid4()), "status": "Started", "replica": 3,
           "arbiter": 0, "stripe": 1, "transport": "tcp", "options": {}, "tasks": {},
           "bricks": [{"host": "vm", "path": f"/srv/r{i}", "node": str(uuid.uuid4()),
                       "port": 49152 + i} for i in (1, 2, 3)]}
    vol.update(kw)
    return Volume.from_json(vol)


def chain(volfile: vf.Volfile) -> list[str]:
    """The types from the top down a brick graph (one child each)."""
    out, v = [], volfile.top
    while True:
        out.append(v.type)
        if not v.subvolumes:
            return out
        v = volfile[v.subvolumes[0]]


def test_brick_graph_has_the_index_where_glusterd_puts_it():
    vol = rep3()
    mine = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    order = chain(mine)
    # GlusterFS's server_graph_table: io-stats, index, ..., io-threads, upcall, ..., locks
    assert order[order.index("features/index") - 1:order.index("features/index") + 4] == \
        ["debug/io-stats", "features/index", "performance/io-threads", "features/upcall",
         "features/locks"]
    index = mine["rep3-index"].options
    if SAMPLES.exists():  # glusterd 10's rep3.vm.srv-r1.vol
        theirs = vf.load(SAMPLES / "rep3.vm.srv-r1.vol")["rep3-index"].options
        for key in ("xattrop-pending-watchlist", "xattrop-dirty-watchlist", "index-base"):
            assert index[key] == theirs[key], key
    assert mine["rep3-posix"].options["glusterd-uuid"] == vol.bricks[0].node
    Graph(mine)
    # an arbiter brick: posix -> arbiter -> changelog -> access-control ->
    # locks -> upcall -> io-threads -> index, as glusterd stacks them
    arb = rep3(arbiter=1)
    arb.bricks[2].arbiter = True
    order = chain(vf.parses(volgen.brick_volfile(arb, arb.bricks[2])))
    assert order[-8:] == ["features/index", "performance/io-threads", "features/upcall",
                          "features/locks", "features/access-control", "features/changelog",
                          "features/arbiter", "storage/posix"]
    # not on a distribute volume's bricks
    dist = rep3(replica=1)
    assert "features/index" not in chain(vf.parses(volgen.brick_volfile(dist,
                                                                        dist.bricks[0])))
    assert "rep3-shd.vol" not in volgen.volfiles(dist)


def test_shd_volfile_is_glusterds_rep3_shd_graph():
    vol = rep3(options={"cluster.heal-timeout": "7", "cluster.data-self-heal": "off",
                        "cluster.granular-entry-heal": "on"})
    text = volgen.volfiles(vol)["rep3-shd.vol"]
    mine = vf.parses(text)
    assert mine.top.name == "rep3" and mine.top.type == "debug/io-stats"
    assert mine.top.subvolumes == ["rep3-replicate-0"]
    afr = mine["rep3-replicate-0"].options
    assert afr["iam-self-heal-daemon"] == "yes"
    # the daemon's settings win over the volume's (glusterd's shd mod_dict)
    assert (afr["data-self-heal"], afr["background-self-heal-count"]) == ("on", "0")
    assert afr["heal-timeout"] == "7" and afr["granular-entry-heal"] == "on"
    if SAMPLES.exists():
        theirs = vf.load(SAMPLES / "rep3-shd.vol")
        assert [v.name for v in mine.volumes] == [v.name for v in theirs.volumes]
        assert [v.type for v in mine.volumes] == [v.type for v in theirs.volumes]
        for key in ("iam-self-heal-daemon", "metadata-self-heal", "entry-self-heal",
                    "background-self-heal-count", "afr-pending-xattr"):
            assert afr[key] == theirs["rep3-replicate-0"].options[key], key
        assert mine["rep3-client-0"].options["remote-subvolume"] == \
            theirs["rep3-client-0"].options["remote-subvolume"]
    Graph(mine)
    # two replica sets under one io-stats
    six = rep3(bricks=[{"host": "h", "path": f"/b{i}", "node": "n", "port": 0}
                       for i in range(6)])
    graph = vf.parses(volgen.shd_volfile(six))
    assert graph.top.subvolumes == ["rep3-replicate-0", "rep3-replicate-1"]
    assert graph["rep3-replicate-1"].subvolumes == ["rep3-client-3", "rep3-client-4",
                                                    "rep3-client-5"]
    Graph(graph)
    assert volgen.shd_enabled(vol)
    assert not volgen.shd_enabled(rep3(options={"cluster.self-heal-daemon": "disable"}))


@pytest.mark.parametrize("words,verb", [
    (["v"], "index"), (["v", "full"], "full"), (["v", "enable"], "enable"),
    (["v", "info"], "info"), (["v", "info", "split-brain"], "info-split-brain"),
    (["v", "info", "summary"], "info-summary"), (["v", "statistics"], "statistics"),
    (["v", "statistics", "heal-count"], "heal-count"),
    (["v", "split-brain", "bigger-file", "/f"], "split-brain"),
    (["v", "split-brain", "source-brick", "h:/b"], "split-brain"),
    (["v", "split-brain", "source-brick", "h:/b", "/f"], "split-brain")])
def test_heal_grammar(words, verb):
    assert heal_cmd.parse(words)[0] == verb


@pytest.mark.parametrize("words", [
    [], ["v", "info", "all"], ["v", "split-brain", "latest-mtime"],
    ["v", "split-brain", "bigger-file", "/a", "/b"], ["v", "split-brain", "source-brick"],
    ["v", "split-brain", "source-brick", "h:/b", "/f", "/g"], ["v", "statistics", "x"],
    ["v", "full", "now"]])
def test_heal_grammar_refuses(words):
    with pytest.raises(heal_cmd.Usage):
        heal_cmd.parse(words)


def test_output_formats():
    doc = {"split_brain_only": False, "bricks": [
        {"brick": "h:/b0", "status": "Connected", "count": 2, "entries": [
            {"path": "/a", "status": "heal-pending"},
            {"path": "/b", "status": "split-brain"}]},
        {"brick": "h:/b1", "status": "Transport endpoint is not connected", "count": None,
         "entries": None}]}
    assert heal_cmd.format_info(doc) == (
        "Brick h:/b0\n/a \n/b - Is in split-brain\nStatus: Connected\nNumber of entries: 2\n\n"
        "Brick h:/b1\nStatus: Transport endpoint is not connected\nNumber of entries: -\n\n")
    summary = heal_cmd.format_info(doc, summary=True)
    assert "Total Number of entries: 2\nNumber of entries in heal pending: 1\n" \
           "Number of entries in split-brain: 1\nNumber of entries possibly healing: 0" in summary
    doc["split_brain_only"] = True
    doc["bricks"][0]["entries"] = doc["bricks"][0]["entries"][1:]
    assert heal_cmd.format_info(doc).startswith(
        "Brick h:/b0\n/b\nStatus: Connected\nNumber of entries in split-brain: 1\n")
    t = time.time()
    stats = heal_cmd.format_statistics({"bricks": [{"brick": "h:/b0", "number": 0, "events": [
        {"type": "INDEX", "start": t, "end": t + 1, "in_progress": False, "healed": 3,
         "split_brain": 1, "heal_failed": 0},
        {"type": "FULL", "start": t, "end": None, "in_progress": True, "healed": 1,
         "split_brain": 0, "heal_failed": 0}]}]})
    assert stats.startswith("------------------------------------------------\n\n"
                            "Crawl statistics for brick no 0\nHostname of brick h\n\n"
                            f"Starting time of crawl: {time.ctime(t)}\n\n"
                            f"Ending time of crawl: {time.ctime(t + 1)}\n\n"
                            "Type of crawl: INDEX\nNo. of entries healed: 3\n"
                            "No. of entries in split-brain: 1\nNo. of heal failed entries: 0")
    assert "Crawl is in progress\nType of crawl: FULL" in stats
    assert heal_cmd.format_heal_count({"bricks": [
        {"brick": "h:/b0", "status": "", "count": 4},
        {"brick": "h:/b1", "status": "Brick is not connected"}]}) == (
        "\nBrick h:/b0\nNumber of entries: 4\n\nBrick h:/b1\nStatus: Brick is not connected\n"
        "No gathered input for this brick")
