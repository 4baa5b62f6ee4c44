"""Who counts as an internal client on a volume that squashes root, tried as
an attacker would.

An internal pid (fops.ClientPid: gsyncd -1, defrag -3, self-heal -6 ...)
lets a fop pass features/access-control.  It is the client's word, so on a
glusterpyd volume with server.root-squash on it counts only from a client
logged in with the volume's internal user (auth.login credentials, which
glusterpyd gives its own processes through their volfiles): a client
without them that claims pid -1 or -6 is refused root's 0600 file, while
glustershd still heals such files and the rebalance process still moves
them.  A client with a wrong password is rejected at SETVOLUME, and the
credentials never leave the node: the client volfile served to mounts
carries none, and the volfiles that do are refused to a caller elsewhere
(network namespaces, as in test_glusterd_cluster.py).  Real processes
throughout.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import time
from pathlib import Path

import pytest
import trio

from glusterpy import volfile as vf
from glusterpy.fops import ClientPid
from glusterpy.gfapi import Volume
from glusterpy.graph import Graph
from test_glusterd_cluster import in_netns, switched_namespaces
from test_glusterd_support import Daemon, running_daemon, wait_for
from test_heal_cli import all_online, assert_replicas, healed, kill9_brick, make_replica3
from test_rebalance_cli import bricks, on_hashed_brick

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")

SECRET = b"root's eyes only\n" * 64


def write_root_file(vol: Volume, path: str, data: bytes) -> None:
    with vol.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) as f:
        f.write(data)
    vol.chmod(path, 0o600)
    st = vol.stat(path)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


def claiming(vol: Volume, pid: int) -> Volume:
    """`vol`'s fops sent with internal pid `pid` (as the geo-replication
    worker sets its own; any client can)."""
    avol = vol._avol
    avol.identity = dataclasses.replace(avol.identity, pid=pid)
    return vol


def read_all(vol: Volume, path: str) -> bytes:
    with vol.open(path, os.O_RDONLY) as f:
        return f.read(1 << 20)


def volume_doc(d: Daemon, name: str) -> dict:
    return json.loads((d.workdir / "vols" / name / "info.json").read_text())


def brick_log(d: Daemon) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in (d.workdir / "logs" / "bricks").glob("*.log"))


def test_a_client_without_credentials_claiming_an_internal_pid_is_refused(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "sq", *bricks(tmp_path, "sq0"))
        d.ok("volume", "start", "sq")
        with Volume("127.0.0.1", "sq", port=d.port) as vol:
            write_root_file(vol, "/secret", SECRET)
        d.ok("volume", "set", "sq", "server.root-squash", "on")
        for pid in (ClientPid.GSYNCD, ClientPid.SELF_HEALD, ClientPid.DEFRAG, 0):
            # a fresh client each time: nothing cached from another identity
            with claiming(Volume("127.0.0.1", "sq", port=d.port), pid) as rogue:
                with pytest.raises(OSError) as read:
                    read_all(rogue, "/secret")
                assert read.value.errno == errno.EACCES, (pid, read.value)
                with pytest.raises(OSError) as write:
                    with rogue.open("/secret", os.O_WRONLY) as f:
                        f.write(b"owned")
                assert write.value.errno == errno.EACCES, (pid, write.value)
        assert (tmp_path / "sq0" / "secret").read_bytes() == SECRET
        # the brick says why, once per client
        wait_for(lambda: "its internal pid -1 is dropped" in brick_log(d), 10,
                 "the brick's log line")
        assert brick_log(d).count("its internal pid -6 is dropped") == 1


def probe_client(d: Daemon, name: str, brick: Path, **login: str) -> str:
    port = d.ok("volume", "status", name, "--json").json()["volumes"][0]["bricks"][0]["port"]
    options = "".join(f"    option {k} {v}\n" for k, v in login.items())
    return ("volume probe\n    type protocol/client\n    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume {brick}\n"
            f"    option transport-type tcp\n{options}end-volume\n")


def connects(text: str) -> bool:
    async def main() -> bool:
        graph = Graph.from_text(text)
        async with graph.running():
            return await graph.wait_child_up(5)
    return trio.run(main)


def test_a_wrong_password_is_rejected_at_setvolume(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "pw", *bricks(tmp_path, "pw0"))
        d.ok("volume", "start", "pw")
        doc = volume_doc(d, "pw")
        user, password = doc["username"], doc["password"]
        brick = tmp_path / "pw0"
        assert not connects(probe_client(d, "pw", brick, username=user,
                                         password=password[:-1] + "x"))
        assert not connects(probe_client(d, "pw", brick, username=user, password='""'))
        assert f"wrong password for user {user}" in brick_log(d)
        # the right one logs in; so does a client that sends none (auth.allow *)
        assert connects(probe_client(d, "pw", brick, username=user, password=password))
        assert connects(probe_client(d, "pw", brick))
        # the API shows the volume, not its internal user
        for path in ("/api/v1/volumes/pw", "/api/v1/volumes"):
            status, body = d.api("GET", path)
            assert status == 200 and password not in json.dumps(body) and \
                user not in json.dumps(body), body


def test_glustershd_heals_root_files_on_a_root_squash_volume(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "hsq", options=[("cluster.heal-timeout", "5")])
        expected = {}
        with Volume("127.0.0.1", "hsq", port=d.port) as vol:
            vol.mkdir("/private", 0o700)
            for i in range(3):
                expected[f"/private/before{i}"] = SECRET + b"%d" % i
                write_root_file(vol, f"/private/before{i}", expected[f"/private/before{i}"])
            kill9_brick(d, "hsq", 1)
            time.sleep(0.3)
            for i in range(3):
                expected[f"/private/before{i}"] = b"changed-%d" % i + os.urandom(3000)
                write_root_file(vol, f"/private/before{i}", expected[f"/private/before{i}"])
                expected[f"/private/while{i}"] = b"new-%d" % i + os.urandom(5000)
                write_root_file(vol, f"/private/while{i}", expected[f"/private/while{i}"])
        d.ok("volume", "set", "hsq", "server.root-squash", "on")
        d.ok("volume", "start", "hsq", "force")
        wait_for(lambda: all_online(d, "hsq"), 30, "brick 1 back")
        wait_for(lambda: healed(d, "hsq"), 90, "glustershd to heal root's files")
        assert_replicas(base, {p.lstrip("/"): v for p, v in expected.items()})
        for b in base:
            st = (b / "private" / "while2").stat()
            assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
        with claiming(Volume("127.0.0.1", "hsq", port=d.port), ClientPid.SELF_HEALD) as rogue:
            with pytest.raises(OSError) as read:
                read_all(rogue, "/private/while2")
            assert read.value.errno == errno.EACCES


def test_rebalance_moves_root_files_on_a_root_squash_volume(tmp_path):
    b = bricks(tmp_path, "q1", "q2")
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "rsq", b[0])
        d.ok("volume", "start", "rsq")
        expected = {}
        with Volume("127.0.0.1", "rsq", port=d.port) as vol:
            vol.mkdir("/private", 0o700)
            for i in range(40):
                expected[f"/private/f{i}"] = b"move-%d-" % i + os.urandom(1000 + i)
                write_root_file(vol, f"/private/f{i}", expected[f"/private/f{i}"])
        d.ok("volume", "set", "rsq", "server.root-squash", "on")
        d.ok("volume", "add-brick", "rsq", b[1])
        r = d.ok("volume", "rebalance", "rsq", "start", "--watch")
        assert re.search(r"completed 100\.0% - \d+ files moved .* 40 scanned, 0 failures, "
                         r"0 skipped", r.out), r.text
        paths = [tmp_path / "q1", tmp_path / "q2"]
        assert all(on_hashed_brick(paths, p) for p in expected)
        moved = [p for p in expected if (paths[1] / p.lstrip("/")).exists()]
        assert moved, "nothing hashed to the new brick"
        for p, data in expected.items():
            where = paths[1] if p in moved else paths[0]
            f = where / p.lstrip("/")
            assert f.read_bytes() == data
            st = f.stat()
            assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


NS_PORT = 24419
SUBNET = "10.213.77"


def test_volfiles_with_credentials_stay_on_the_node(tmp_path):
    """From another host: the served client volfile carries no credential;
    the rebalance, geo-replication and brick volfiles, which do, are
    refused (EACCES); the node itself gets them."""
    with switched_namespaces(2) as (node_ns, other_ns):
        d = Daemon(tmp_path / "wd", port=NS_PORT, address=f"{SUBNET}.1", netns=node_ns)
        try:
            d.start()
            d.ok("volume", "create", "nv", f"{SUBNET}.1:{tmp_path / 'nv0'}")
            d.ok("volume", "start", "nv")
            doc = volume_doc(d, "nv")
            brick_key = f"nv.{SUBNET}.1.{str(tmp_path / 'nv0').strip('/').replace('/', '-')}"
            script = f"""
                import errno, trio
                from glusterpy.gfapi import mgmt
                servers = mgmt.volfile_servers(["{SUBNET}.1"], {NS_PORT})
                async def main():
                    for key in ("nv", "nv.noperf"):
                        text = (await mgmt.fetch_volfile(servers, key)).text
                        print(key, "served", {doc["password"]!r} in text, "password" in text)
                    for key in ("nv.rebalance", "nv.gsyncd", {brick_key!r}):
                        try:
                            text = (await mgmt.fetch_volfile(servers, key)).text
                            print(key, "served", {doc["password"]!r} in text)
                        except mgmt.VolfileFetchError as e:
                            print(key, "refused", errno.errorcode.get(e.errno))
                trio.run(main)
                """
            out = in_netns(other_ns, script).split("\n")
            assert out[:5] == ["nv served False False", "nv.noperf served False False",
                               "nv.rebalance refused EACCES", "nv.gsyncd refused EACCES",
                               f"{brick_key} refused EACCES"], out
            # on the node (its own address, as its rebalance process asks)
            local = in_netns(node_ns, script).split("\n")
            assert local[2:5] == ["nv.rebalance served True", "nv.gsyncd served True",
                                  f"{brick_key} served True"], local
            served = vf.parses(in_netns(node_ns, f"""
                import trio
                from glusterpy.gfapi import mgmt
                servers = mgmt.volfile_servers(["{SUBNET}.1"], {NS_PORT})
                print(trio.run(mgmt.fetch_volfile, servers, "nv.rebalance").text)
                """))
            assert served["nv-client-0"].options["username"] == doc["username"]
        finally:
            d.cleanup()


def test_a_volume_stored_without_credentials_gets_them_at_its_next_operation(tmp_path):
    """A store written before volumes had an internal user still loads
    (no auth.login then); the next operation - here the one that turns
    root-squash on - gives the volume its user on every brick, live, and
    a client that logs in with it keeps its internal pid while a rogue one
    does not."""
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "up", *bricks(tmp_path, "up0"))
        d.ok("volume", "start", "up")
        with Volume("127.0.0.1", "up", port=d.port) as vol:
            write_root_file(vol, "/secret", SECRET)
        d.stop()
        info = d.workdir / "vols" / "up" / "info.json"
        doc = json.loads(info.read_text())
        del doc["username"], doc["password"]
        info.write_text(json.dumps(doc))
        d.start()
        vdir = d.workdir / "vols" / "up"
        assert not any(vf.parses(p.read_text()).carries_credentials
                       for p in vdir.glob("*.vol"))
        with Volume("127.0.0.1", "up", port=d.port) as vol:
            assert read_all(vol, "/secret") == SECRET  # the brick was adopted
        d.ok("volume", "set", "up", "server.root-squash", "on")
        doc = volume_doc(d, "up")
        assert doc["username"] and doc["password"]
        [brick_file] = [p for p in vdir.glob("up.*.vol")
                        if vf.parses(p.read_text()).top.type == "protocol/server"]
        assert (brick_file.stat().st_mode & 0o777) == 0o600
        assert vf.parses(brick_file.read_text()).top.options[
            f"auth.login.{doc['username']}.password"] == doc["password"]
        with claiming(Volume("127.0.0.1", "up", port=d.port), ClientPid.GSYNCD) as rogue:
            with pytest.raises(OSError) as read:
                read_all(rogue, "/secret")
            assert read.value.errno == errno.EACCES
        # the geo-replication worker's graph, as root on the node reads it
        with claiming(Volume.from_volfile(vdir / "up.gsyncd.vol"), ClientPid.GSYNCD) as ours:
            assert read_all(ours, "/secret") == SECRET


def test_geo_replication_syncs_root_files_of_a_root_squash_primary(tmp_path):
    """The geo-replication worker reads its primary logged in (VOL.gsyncd):
    with root-squash on there, root's 0600 file in a 0700 directory still
    reaches the secondary, owner and mode kept."""
    from test_georep import Pair
    pair = Pair(tmp_path)
    try:
        pair.start()
        pair.pvol.mkdir("/private", 0o700)
        write_root_file(pair.pvol, "/private/secret", SECRET)
        pair.p.ok("volume", "set", "pv", "server.root-squash", "on")
        assert pair.geo("create").rc == 0
        pair.geo("config", "change-interval", "1")
        assert pair.geo("start").rc == 0
        pair.checkpoint()
        found = [tmp_path / b / "private" / "secret" for b in ("sb0", "sb1")
                 if (tmp_path / b / "private" / "secret").exists()]
        assert len(found) == 1, pair._logs()
        assert found[0].read_bytes() == SECRET
        st = found[0].stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    finally:
        pair.cleanup()
