"""The volfile server (glusterpy/glusterd/volfile_server.py) and the portmap
registry, in process over loopback: GETSPEC key handling as glusterd's,
PORTMAP sign-in/out/lookups, `remote-port` filled in for signed-in bricks,
FETCHSPEC when that changes, and what a bad key or a bad sign-in gets."""

from __future__ import annotations

import errno
import socket

import pytest

from glusterpy import volfile as vf
from glusterpy.cli.main import main
from glusterpy.glusterd.portmap import PortmapRegistry
from glusterpy.glusterd.volfile_server import VolfileServer, fill_remote_ports
from glusterpy.rpc import (BrickByPortRequest, DumpRequest, GetSpecRequest, PortByBrickRequest,
                           SetVolumeRequest, SigninRequest, SignoutRequest)
from glusterpy.rpc.programs import DUMP, HANDSHAKE, PORTMAP
from glusterpy.rpc.transport import RpcCallFailed

from brickclient import raw_client, wait_until

GETSPEC = HANDSHAKE.by_name("GETSPEC")

CLIENT_VOL = """volume vol-client-0
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume /bricks/b0
end-volume

volume vol-client-1
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume /bricks/b1
    option remote-port 50001
end-volume

volume vol
    type cluster/distribute
    subvolumes vol-client-0 vol-client-1
end-volume
"""


@pytest.fixture
async def volserver(tmp_path, nursery):
    d = tmp_path / "vols"
    d.mkdir()
    (d / "vol.vol").write_text(CLIENT_VOL)
    server = VolfileServer(d)
    await nursery.start(server.serve, "127.0.0.1", 0)
    return server


async def getspec(c, key):
    return await c.call(GETSPEC, GetSpecRequest(flags=1, key=key,
                                                xdata={"min-op-version": "1",
                                                       "max-op-version": "100000"}))


async def test_getspec_serves_the_volfile_by_key(volserver):
    async with raw_client(volserver.port) as c:
        for key in ("vol", "/vol"):  # a leading '/' is dropped, as glusterd does
            reply = await getspec(c, key)
            assert reply.op_ret == len(CLIENT_VOL) and reply.op_errno == 0
            assert reply.spec == CLIENT_VOL and reply.xdata is None


@pytest.mark.parametrize("key,errno_", [
    ("nope", errno.ENOENT), ("", errno.ENOENT), ("../vols/vol", errno.ENOENT),
    ("a/../vol", errno.ENOENT), (".hidden", errno.ENOENT), ("//vol", errno.ENOENT),
    ("x" * 255, errno.EINVAL), ("x" * 300, errno.EINVAL),
])
async def test_getspec_refusals(volserver, key, errno_):
    (volserver.dir / ".hidden.vol").write_text(CLIENT_VOL)
    async with raw_client(volserver.port) as c:
        reply = await getspec(c, key)
        assert (reply.op_ret, reply.op_errno, reply.spec) == (-1, errno_, "")


async def test_getspec_falls_back_to_fuse_and_trusted_volfiles(volserver, tmp_path):
    (volserver.dir / "fusevol.tcp-fuse.vol").write_text("volume a\n type x/y\nend-volume\n")
    (volserver.dir / "both.tcp-fuse.vol").write_text("volume plain\n type x/y\nend-volume\n")
    (volserver.dir / "trusted-both.tcp-fuse.vol").write_text(
        "volume trusted\n type x/y\nend-volume\n")
    outside = tmp_path / "secret.vol"
    outside.write_text("volume s\n type x/y\nend-volume\n")
    (volserver.dir / "escape.vol").symlink_to(outside)
    async with raw_client(volserver.port) as c:
        assert "volume a" in (await getspec(c, "fusevol")).spec
        # a client on this host gets the trusted volfile, as glusterd gives it
        assert "volume trusted" in (await getspec(c, "both")).spec
        assert (await getspec(c, "escape")).op_errno == errno.ENOENT
    assert volserver.volfile_path("both", "192.0.2.1").name == "both.tcp-fuse.vol"


async def test_portmap_signin_lookup_signout(volserver):
    async with raw_client(volserver.port) as brick, raw_client(volserver.port) as client:
        miss = await client.call(PORTMAP.by_name("PORTBYBRICK"), PortByBrickRequest("/bricks/b0"))
        assert (miss.op_ret, miss.port) == (-1, 0)
        for name in ("/bricks/b0", "/bricks/b2"):
            r = await brick.call(PORTMAP.by_name("SIGNIN"), SigninRequest(name, 49999, 123))
            assert (r.op_ret, r.op_errno) == (0, 0)
        hit = await client.call(PORTMAP.by_name("PORTBYBRICK"), PortByBrickRequest("/bricks/b0"))
        assert (hit.op_ret, hit.port) == (0, 49999)
        names = await client.call(PORTMAP.by_name("BRICKBYPORT"), BrickByPortRequest(49999))
        assert (names.op_ret, sorted(names.brick.split())) == (0, ["/bricks/b0", "/bricks/b2"])
        # whole names only: a prefix is not a brick
        assert (await client.call(PORTMAP.by_name("PORTBYBRICK"),
                                  PortByBrickRequest("/bricks/b"))).op_ret == -1
        bad = await brick.call(PORTMAP.by_name("SIGNIN"), SigninRequest("a b", 1, 1))
        assert (bad.op_ret, bad.op_errno) == (-1, errno.EINVAL)
        bad = await brick.call(PORTMAP.by_name("SIGNIN"), SigninRequest("x", 70000, 1))
        assert bad.op_ret == -1
        # a stale sign-out for another port does not erase the registration
        await brick.call(PORTMAP.by_name("SIGNOUT"), SignoutRequest("/bricks/b0", 40000))
        assert volserver.portmap.port_by_brick("/bricks/b0") == 49999
        out = await brick.call(PORTMAP.by_name("SIGNOUT"), SignoutRequest("/bricks/b0", 49999))
        assert out.op_ret == 0 and volserver.portmap.port_by_brick("/bricks/b0") is None
        assert (await client.call(PORTMAP.by_name("BRICKBYPORT"),
                                  BrickByPortRequest(1))).op_ret == -1
    # the brick's connection closed: what it signed in is forgotten
    await wait_until(lambda: len(volserver.portmap) == 0)


async def test_remote_port_is_filled_in_and_fetchspec_announces_it(volserver):
    async with raw_client(volserver.port) as client, raw_client(volserver.port) as brick:
        before = vf.parses((await getspec(client, "vol")).spec)
        assert "remote-port" not in before["vol-client-0"].options
        await brick.call(PORTMAP.by_name("SIGNIN"), SigninRequest("/bricks/b0", 49200, 1))
        await brick.call(PORTMAP.by_name("SIGNIN"), SigninRequest("/bricks/b1", 49201, 1))
        await wait_until(lambda: client.callbacks)
        assert client.callbacks[0][0] == "FETCHSPEC"
        after = vf.parses((await getspec(client, "vol")).spec)
        assert after["vol-client-0"].options["remote-port"] == "49200"
        assert after["vol-client-1"].options["remote-port"] == "50001"  # kept as written
        assert after["vol"].subvolumes == ["vol-client-0", "vol-client-1"]
    assert (volserver.dir / "vol.vol").read_text() == CLIENT_VOL  # the file is untouched


def test_fill_remote_ports_leaves_what_it_cannot_parse():
    assert fill_remote_ports("not a volfile {", {"x": 1}) == "not a volfile {"
    assert fill_remote_ports(CLIENT_VOL, {"/other": 1}) == CLIENT_VOL


async def test_dump_ping_and_unserved_procedures(volserver):
    async with raw_client(volserver.port) as c:
        dump = await c.call(DUMP.by_name("DUMP"), DumpRequest())
        assert [p.name for p in dump.programs] == ["GF-DUMP", "Gluster Portmap",
                                                   "Gluster Handshake"]
        assert (await c.call(DUMP.by_name("PING"))).op_ret == 0
        with pytest.raises(RpcCallFailed, match="PROC_UNAVAIL"):
            await c.call(HANDSHAKE.by_name("SETVOLUME"), SetVolumeRequest())


def test_registry_alloc_port_finds_a_free_port_in_range():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        registry = PortmapRegistry(port, port)  # the only port is taken
        assert registry.alloc_port("127.0.0.1") == 0
    registry = PortmapRegistry(41000, 41010)
    registry.signin("b", 41000)
    got = registry.alloc_port("127.0.0.1")
    assert 41001 <= got <= 41010
    with pytest.raises(ValueError):
        PortmapRegistry(10, 5)


def test_volfile_server_cli_refuses_bad_arguments(tmp_path):
    assert main(["volfile-server", "--dir", str(tmp_path / "missing"), "--port", "1"]) == 2
    assert main(["volfile-server", "--dir", str(tmp_path), "--port", "70000"]) == 2
