"""glusterpyd's parts without processes: volgen, ops, the store, HTTP, the
shared port (RPC and HTTP told apart by their first byte)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
import trio

from glusterpy import volfile as vf
from glusterpy.cli import global_options
from glusterpy.cli.gluster_cmd import format_info
from glusterpy.glusterd import ops, volgen
from glusterpy.glusterd.daemon import Glusterd
from glusterpy.glusterd.http import request
from glusterpy.glusterd.model import Volume
from glusterpy.glusterd.store import Store, write_atomic
from glusterpy.graph import Graph


def volume_doc(**kw) -> dict:
    vol = {"name": "vm", "id": str(uuid.uuid4()), "status": "Created", "replica": 1,
           "arbiter": 0, "stripe": 1, "transport": "tcp", "options": {}, "tasks": {},
           "bricks": [{"host": "node1", "path": "/srv/b1", "node": "u1", "port": 49152},
                      {"host": "node2", "path": "/srv/b2", "node": "u2", "port": 49153}]}
    vol.update(kw)
    return vol


def volume(**kw) -> Volume:
    return Volume.from_json(volume_doc(**kw))


def test_volfiles_follow_glusterd_names_and_shapes():
    vol = volume()
    files = volgen.volfiles(vol)
    assert set(files) == {"vm.tcp-fuse.vol", "vm.noperf.vol", "vm.rebalance.vol",
                          "vm.gsyncd.vol", "vm.node1.srv-b1.vol", "vm.node2.srv-b2.vol"}
    from glusterpy.gfapi.mgmt import elide_unavailable
    for text in files.values():
        # every volfile loads with our translators, as our clients load it
        parsed = vf.parses(text)
        elide_unavailable(parsed)
        Graph(parsed)
    brick = vf.parses(files["vm.node1.srv-b1.vol"])
    assert brick.top.type == "protocol/server" and brick.top.subvolumes == ["/srv/b1"]
    assert brick.top.options["auth.addr./srv/b1.allow"] == "*"
    assert brick["vm-posix"].options["directory"] == "/srv/b1"
    assert brick["vm-posix"].options["volume-id"] == vol.id
    assert brick["/srv/b1"].type == "debug/io-stats"  # io-stats named by the brick path
    # io-threads, then upcall, between io-stats and locks, as glusterd's
    # brick graph has them
    assert brick["/srv/b1"].subvolumes == ["vm-io-threads"]
    assert brick["vm-io-threads"].type == "performance/io-threads"
    assert brick["vm-io-threads"].subvolumes == ["vm-upcall"]
    assert brick["vm-upcall"].type == "features/upcall"
    assert brick["vm-upcall"].subvolumes == ["vm-locks"]
    client = vf.parses(files["vm.tcp-fuse.vol"])
    assert client.top.name == "vm"
    c0 = client["vm-client-0"].options
    assert (c0["remote-host"], c0["remote-subvolume"], c0["remote-port"]) == \
        ("node1", "/srv/b1", "49152")
    assert client["vm-dht"].subvolumes == ["vm-client-0", "vm-client-1"]
    # GlusterFS 10's client stack over utime, in its order (io-cache where
    # glusterd would put it), io-stats on top
    chain, name = [], client.top.name
    while name != "vm-dht":
        chain.append(client[name].type)
        [name] = client[name].subvolumes
    assert chain == ["debug/io-stats", "performance/io-threads", "performance/md-cache",
                     "performance/quick-read", "performance/open-behind",
                     "performance/io-cache", "performance/write-behind", "features/utime"]
    assert "performance/io-cache" not in {v.type for v in vf.parses(
        files["vm.noperf.vol"]).volumes}
    # the rebalance process's graph: no utime, no caches, glusterd's dht overrides
    rebalance = vf.parses(files["vm.rebalance.vol"])
    assert {v.type for v in rebalance.volumes} <= {"protocol/client", "cluster/distribute",
                                                   "debug/io-stats"}
    assert rebalance.top.name == "vm"
    assert {k: rebalance["vm-dht"].options[k] for k in volgen.REBALANCE_DHT_OPTIONS} == \
        volgen.REBALANCE_DHT_OPTIONS


def test_the_internal_user_reaches_the_trusted_volfiles_only(tmp_path):
    """glusterd's trusted volfiles: every brick lets the volume's internal
    user log in, glusterpyd's own graphs (self-heal daemon, rebalance,
    geo-replication, heal info) log in with it, the volfiles served to
    mounts and gfapi carry no credential, and those that do are 0600."""
    vol = volume(replica=2, username="u-1234", password="p-secret")
    files = volgen.volfiles(vol)
    for name in ("vm.node1.srv-b1.vol", "vm.node2.srv-b2.vol"):
        brick = vf.parses(files[name])
        path = brick.top.subvolumes[0]
        assert brick.top.options[f"auth.login.{path}.allow"] == "u-1234"
        assert brick.top.options["auth.login.u-1234.password"] == "p-secret"
        assert brick.top.options[f"auth.addr.{path}.allow"] == "*"  # as before
        assert brick.carries_credentials
    trusted = {"vm-shd.vol", "vm.rebalance.vol", "vm.gsyncd.vol"}
    for name in trusted:
        graph = vf.parses(files[name])
        clients = [v for v in graph.volumes if v.type == "protocol/client"]
        assert len(clients) == 2
        assert all((c.options["username"], c.options["password"]) == ("u-1234", "p-secret")
                   for c in clients), name
    heal = vf.parses(volgen.client_volfile(vol, perf=False, trusted=True))
    assert heal["vm-client-0"].options["password"] == "p-secret"
    for name in ("vm.tcp-fuse.vol", "vm.noperf.vol"):
        assert "p-secret" not in files[name] and "u-1234" not in files[name]
        assert not vf.parses(files[name]).carries_credentials
    # the graphs load: protocol/client and protocol/server take the options
    from glusterpy.gfapi.mgmt import elide_unavailable
    for text in files.values():
        parsed = vf.parses(text)
        elide_unavailable(parsed)
        Graph(parsed)
    store = Store(tmp_path / "wd")
    store.open()
    store.save_volume(vol, files)
    for name in files:
        mode = (tmp_path / "wd" / "vols" / "vm" / name).stat().st_mode & 0o777
        assert mode == (0o644 if name in ("vm.tcp-fuse.vol", "vm.noperf.vol") else 0o600), \
            (name, oct(mode))
    # the document keeps them; a document without them (made before) loads
    # without, and its volfiles then have none
    assert Volume.from_json(vol.to_json()).password == "p-secret"
    old = volume()
    assert old.username is None and "username" not in old.to_json()
    assert not any(vf.parses(t).carries_credentials for t in volgen.volfiles(old).values())


def test_volume_set_keys_reach_their_translators():
    vol = volume(options={"performance.cache-size": "64MB", "network.ping-timeout": "7",
                          "auth.allow": "10.0.0.*", "performance.io-cache": "off"})
    client = vf.parses(volgen.client_volfile(vol))
    assert "performance/io-cache" not in {v.type for v in client.volumes}
    assert client["vm-client-1"].options["ping-timeout"] == "7"
    brick = vf.parses(volgen.brick_volfile(vol, vol.bricks[1]))
    assert brick.top.options["auth.addr./srv/b2.allow"] == "10.0.0.*"
    vol.options["performance.io-cache"] = "on"
    assert vf.parses(volgen.client_volfile(vol))["vm-io-cache"].options["cache-size"] == "64MB"
    # GlusterFS 8's name for the same option
    vol.options = {"performance.io-cache-size": "80MB"}
    assert vf.parses(volgen.client_volfile(vol))["vm-io-cache"].options["cache-size"] == "80MB"
    # glusterd's keys switch the translators glusterpy lacks as well
    vol.options = {"performance.write-behind": "off", "performance.stat-prefetch": "off"}
    types = {v.type for v in vf.parses(volgen.client_volfile(vol)).volumes}
    assert "performance/write-behind" not in types and "performance/md-cache" not in types
    assert "performance/quick-read" in types
    # side-specific keys reach one side's io-stats only
    vol.options = {"diagnostics.brick-log-level": "DEBUG",
                      "diagnostics.client-log-level": "WARNING"}
    assert vf.parses(volgen.client_volfile(vol))["vm"].options["log-level"] == "WARNING"
    brick = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    assert brick["/srv/b1"].options["log-level"] == "DEBUG"


def test_stripe_and_replica_sets():
    vol = volume(stripe=2, bricks=[{"host": "h", "path": f"/b{i}", "node": "u", "port": 0}
                                   for i in range(4)])
    client = vf.parses(volgen.client_volfile(vol))
    assert client["vm-stripe-0"].subvolumes == ["vm-client-0", "vm-client-1"]
    assert client["vm-dht"].subvolumes == ["vm-stripe-0", "vm-stripe-1"]
    assert volgen.volume_type(vol) == "Distributed-Stripe"
    rep = volume(replica=3, bricks=[{"host": "h", "path": f"/r{i}", "node": "u", "port": 0}
                                    for i in range(3)])
    assert volgen.volume_type(rep) == "Replicate"
    client = vf.parses(volgen.client_volfile(rep))
    assert client["vm-replicate-0"].subvolumes == ["vm-client-0", "vm-client-1",
                                                  "vm-client-2"]


def test_needs_restart_only_for_shape_or_fixed_options():
    vol = volume()
    a = volgen.brick_volfile(vol, vol.bricks[0])
    vol.options["auth.allow"] = "127.0.0.1"
    assert not volgen.needs_restart(a, volgen.brick_volfile(vol, vol.bricks[0]))
    moved = dataclasses.replace(vol.bricks[0], port=50000)
    assert volgen.needs_restart(a, volgen.brick_volfile(vol, moved))  # listen-port is fixed


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ValueError, match="Did you mean performance.cache-size"):
        volgen.lookup_key("performance.cache-siz")


@pytest.mark.parametrize("name,message", [
    ("all", "cannot be the name"), ("a/b", "should not contain"), ("x" * 300, "exceeds"),
    ("-x", "should not start"), ("naïve", "should not contain"), ("", "required")])
def test_volume_names(name, message):
    with pytest.raises(ValueError, match=message):
        ops.check_volname(name)


def test_brick_paths(tmp_path):
    cluster = ops.Cluster("me", ["127.0.0.1"], {}, {"old": volume(
        bricks=[{"host": "127.0.0.1", "path": str(tmp_path / "used"), "node": "me",
                 "port": 1}])}, tmp_path / "wd")
    base = {"name": "new", "bricks": []}
    for bricks, message in [
        ([f"127.0.0.1:{tmp_path / 'used' / 'sub'}"], "containing or be contained"),
        ([f"127.0.0.1:{tmp_path}"], "containing or be contained"),
        ([f"127.0.0.1:{tmp_path / 'used'}"], "already part of a volume"),
        ([f"127.0.0.1:{tmp_path / 'a'}", f"127.0.0.1:{tmp_path / 'a'}/"], "duplicate"),
        (["127.0.0.1:relative"], "wrong brick type"),
        (["127.0.0.1:/"], "root directory"),
        (["nohost.invalid:/srv/x"], "Peer in Cluster"),
    ]:
        with pytest.raises(ValueError, match=message):
            ops.prepare_create(cluster, dict(base, bricks=bricks))
    with pytest.raises(ValueError, match="working directory"):
        new = ops.prepare_create(cluster, dict(base, bricks=[f"127.0.0.1:{tmp_path / 'wd/b'}"]))
        ops.stage_local("me", tmp_path / "wd", None, new, False, set(), lambda t: 50000)


def test_store_writes_atomically_and_skips_a_torn_audit_line(tmp_path):
    store = Store(tmp_path / "wd")
    node = store.open()
    assert store.open() == node  # the identity is kept
    write_atomic(store.root / "x.json", "one")
    write_atomic(store.root / "x.json", "two")
    assert (store.root / "x.json").read_text() == "two"
    assert not list(store.root.glob(".x.json.*"))  # no temp file left
    store.audit({"op": "create"})
    with open(store.audit_path, "ab") as f:
        f.write(b'{"op": "cut sh')  # what a crash mid-write leaves
    assert [e["op"] for e in store.read_audit()] == ["create"]
    store.save_volume(volume(), {"vm.tcp-fuse.vol": "x"})
    store.delete_volume("vm")
    assert store.volumes() == {}


def test_global_options_before_the_command_are_parsed_once():
    opts, rest = global_options.split(["--mode=script", "--remote-host", "h:1", "volume",
                                       "stop", "v"])
    assert (opts.yes, opts.remote, rest) == (True, "h:1", ["volume", "stop", "v"])
    assert global_options.split(["brick", "--volfile", "x"])[1] == ["brick", "--volfile", "x"]


def test_info_format_of_an_arbiter_volume():
    vol = volume_doc(replica=3, arbiter=1, bricks=[
        {"host": "h", "path": f"/a{i}", "node": "u", "port": 0, "name": f"h:/a{i}",
         **({"arbiter": True} if i == 2 else {})} for i in range(3)])
    vol["type"] = "Replicate"
    text = format_info(vol)
    assert "Number of Bricks: 1 x (2 + 1) = 3" in text and "Brick3: h:/a2 (arbiter)" in text


async def test_one_port_serves_rpc_and_http(tmp_path):
    from glusterpy.gfapi.mgmt import VolfileFetchError, fetch_volfile, volfile_servers
    gd = Glusterd(tmp_path / "wd", address="127.0.0.1", port=0, brick_roots=[str(tmp_path)])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gd.serve)
        # the REST API over TCP: a token needed, over plain HTTP or TLS
        reply = await request("127.0.0.1", port, "GET", "/api/v1/node")
        assert reply.status == 401
        token = gd.trust.tokens.create("t", "read-only", gd.trust.fingerprint)
        reply = await request("127.0.0.1", port, "GET", "/api/v1/node",
                              headers={"authorization": f"Bearer {token}"},
                              tls=gd.trust.client_context(anonymous=True),
                              pin=gd.trust.fingerprint)
        assert reply.status == 200 and reply.doc["uuid"] == gd.uuid
        # GlusterFS RPC on the same port: GETSPEC of a volume that does not exist
        with pytest.raises(BaseException) as info:
            await fetch_volfile(volfile_servers("127.0.0.1", port), "nosuch")
        error = info.value
        while isinstance(error, BaseExceptionGroup):  # trio wraps it in its nursery's group
            error = error.exceptions[0]
        assert isinstance(error, VolfileFetchError) and "does not exist" in str(error)
        # a volume's volfiles, served by key
        vol = volume(name="svc")
        gd.store.save_volume(vol, volgen.volfiles(vol))
        fetched = await fetch_volfile(volfile_servers("127.0.0.1", port), "svc.noperf")
        assert "protocol/client" in fetched.text and "io-cache" not in fetched.text
        fetched = await fetch_volfile(volfile_servers("127.0.0.1", port), "svc")
        assert "performance/io-cache" in fetched.text
        # keep-alive: two requests on one connection, then an h11 parse error
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"NOT-HTTP\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200") == 2 and b"HTTP/1.1 400" in data
        body = data.rsplit(b"\r\n\r\n", 1)[1]
        assert "malformed" in json.loads(body)["error"]
        nursery.cancel_scope.cancel()
