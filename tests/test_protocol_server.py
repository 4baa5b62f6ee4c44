"""protocol/server over real loopback TCP, driven by raw GlusterFS RPC
clients (tests/brickclient.py): the handshake and its refusals, every fop
of the catalogue, per-client fd tables, many clients at once, fds and
locks released on disconnect, auth.addr/auth.login, root squashing,
upcalls and the outstanding-call limit."""

from __future__ import annotations

import errno
import os
import stat
import uuid

import pytest
import trio

from glusterpy.fops import (CATALOGUE, ClientPid, GFID, ROOT_GFID, Caller, EntrylkCmd,
                            EntrylkType, Flock, FopError, Iatt, LockCmd, LockType, Loc,
                            SET_ATTR_MODE, XattropType)
from glusterpy.graph import Graph
from glusterpy.rpc import (ANON_FD, CacheInvalidation, DumpReply, DumpRequest, GetSpecRequest,
                           GetVolumeInfoRequest, InodelkContention, RemoteFd, RpcConnection,
                           SetLkVerRequest)
from glusterpy.rpc.message import AcceptStat
from glusterpy.rpc.programs import HANDSHAKE, DUMP
from glusterpy.rpc.transport import CallRefused, RpcCallFailed, RpcEndpoint
from glusterpy.xlator import Event

from glusterpy import volfile as vf
from glusterpy.volfile import VolfileError
from xlators.protocol.server import Upcall

from brickclient import (DUMP_DUMP, DUMP_PING, HANDSHAKE_PING, brick_volfile,
                         raw_client, running_brick, wait_until)

STACKS = ["posix", "locks"]


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


async def create(c, name, parent=ROOT_GFID, flags=os.O_RDWR | os.O_CREAT, mode=0o644):
    return await c.ok("create", loc=Loc(pargfid=parent, name=name), flags=flags, mode=mode,
                      umask=0o022, xdata=gfid_req())


def err(resp) -> int:
    assert isinstance(resp.result, FopError), resp.result
    return resp.result.errno


# -- handshake -------------------------------------------------------------------


async def test_dump_ping_and_the_brick_handshake_procedures(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        dump = await c.call(DUMP_DUMP, DumpRequest(gfs_id=77))
        assert (dump.op_ret, dump.gfs_id) == (0, 0)
        assert [(p.name, p.number, p.version) for p in dump.programs] == [
            ("GlusterFS 4.x v1", 1298437, 400), ("GF-DUMP", 123451501, 1),
            ("GlusterFS Handshake", 14398633, 2)]
        assert (await c.call(DUMP_PING)).op_ret == 0
        assert (await c.call(HANDSHAKE_PING)).op_ret == 0
        spec = await c.call(HANDSHAKE.by_name("GETSPEC"), GetSpecRequest(key="x"))
        assert (spec.op_ret, spec.op_errno) == (-1, errno.ENOSYS)
        lk = await c.call(HANDSHAKE.by_name("SET_LK_VER"), SetLkVerRequest(uid="u", lk_ver=9))
        assert (lk.op_ret, lk.lk_ver) == (0, 9)
        # procedures a GlusterFS brick has no actor for
        with pytest.raises(RpcCallFailed, match="PROC_UNAVAIL"):
            await c.call(HANDSHAKE.by_name("GET_VOLUME_INFO"), GetVolumeInfoRequest())


def volume_id_brick(brick, volume_id: str) -> str:
    """server -> posix where posix carries a volume-id, as glusterd's bricks do."""
    return (f"volume v-posix\n type storage/posix\n option directory {brick}\n"
            f" option volume-id {volume_id}\nend-volume\n"
            "volume v-server\n type protocol/server\n option transport.socket.listen-port 0\n"
            " option transport.socket.bind-address 127.0.0.1\n"
            " option auth.addr.v-posix.allow *\n subvolumes v-posix\nend-volume\n")


async def test_setvolume_reply_as_glusterfs_sends_it(brick):
    volume_id = str(uuid.uuid4())
    graph = Graph.from_text(volume_id_brick(brick, volume_id))
    async with graph.running(), raw_client(graph.top.port) as c:
        ok = await c.setvolume("v-posix", **{"volume-id": volume_id})
        assert (ok.op_ret, ok.op_errno) == (0, errno.EINVAL)  # GlusterFS leaves EINVAL
        assert ok.keys == ["transport-ptr", "clnt-lk-version", "process-uuid", "ERROR",
                           "volume-id", "child_up"]
        assert ok.text["ERROR"] == "Success" and ok.text["child_up"] == "1"
        assert ok.text["volume-id"] == volume_id
        assert ok.text["process-uuid"] == graph.top.process_uuid
        assert ok.text["clnt-lk-version"] == "0"


@pytest.mark.parametrize("params,errno_,error", [
    ({"remote-subvolume": None}, errno.EINVAL, "No remote-subvolume option specified"),
    ({"remote-subvolume": "nope"}, errno.ENOENT, "Brick not found"),
    ({"process-uuid": None}, errno.EINVAL, "UUID not specified"),
    ({"fops-version": "1298438"}, errno.EINVAL, "version mismatch: client(1298438)"),
    ({"fops-version": None}, errno.EINVAL, "version mismatch: client(0)"),
    ({"subdir-mount": "/sub"}, errno.ENOENT, 'subdirectory for mount "/sub"'),
])
async def test_setvolume_refusals(brick, params, errno_, error):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        subvolume = params.pop("remote-subvolume", b.subvolume)
        reply = await c.setvolume(subvolume, **params) if subvolume is not None else \
            await c.setvolume(None, **params)
        assert (reply.op_ret, reply.op_errno) == (-1, errno_)
        assert reply.text["ERROR"].startswith(error)
        # the connection stays unbound: fops are refused, RELEASE too
        with pytest.raises(RpcCallFailed, match="GARBAGE_ARGS"):
            await c.fop("stat", loc=Loc(gfid=ROOT_GFID))
        with pytest.raises(RpcCallFailed, match="SYSTEM_ERR"):
            await c.fop("release", fd=RemoteFd(ROOT_GFID, 0))
        assert b.server.clients == {}


async def test_volume_id_mismatch_is_refused(brick):
    graph = Graph.from_text(volume_id_brick(brick, str(uuid.uuid4())))
    async with graph.running(), raw_client(graph.top.port) as c:
        reply = await c.setvolume("v-posix", **{"volume-id": str(uuid.uuid4())})
        assert (reply.op_ret, reply.op_errno) == (-1, errno.EINVAL)
        assert reply.text["ERROR"].startswith("Volume-ID different")


async def test_child_down_refuses_setvolume_with_eagain(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        b.posix.notify_parents(Event.CHILD_DOWN)
        reply = await c.setvolume(b.subvolume)
        assert (reply.op_ret, reply.op_errno) == (-1, errno.EAGAIN)
        assert reply.text == {"ERROR": "Not received child_up for this xlator",
                              "child_up": "0"}
        b.posix.notify_parents(Event.CHILD_UP)
        assert (await c.setvolume(b.subvolume)).op_ret == 0


# -- fops --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
async def test_common_fops_over_the_wire(brick, stack):
    async with running_brick(brick, locks=stack == "locks") as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        root = await c.ok("lookup", loc=Loc(gfid=ROOT_GFID))
        assert root.iatt.gfid == ROOT_GFID and root.iatt.ino == 1 and root.iatt.is_dir
        # "." by name is the directory itself (libgfapi sends it)
        dot = await c.ok("lookup", loc=Loc(pargfid=ROOT_GFID, name="."))
        assert dot.iatt.gfid == ROOT_GFID and dot.postparent.gfid == ROOT_GFID
        d = await c.ok("mkdir", loc=Loc(pargfid=ROOT_GFID, name="dir"), mode=0o755,
                       umask=0o022, xdata=gfid_req())
        assert d.iatt.is_dir and (brick / "dir").is_dir()
        f = await create(c, "file", parent=d.iatt.gfid)
        gfid = f.iatt.gfid
        assert f.fd.num == 0
        fd = RemoteFd(gfid, f.fd.num)
        w = await c.ok("writev", fd=fd, data=b"0123456789" * 100, offset=0, flags=0)
        assert w.count == 1000 and w.postbuf.size == 1000
        r = await c.ok("readv", fd=fd, size=4096, offset=10, flags=0)
        assert bytes(r.data) == (b"0123456789" * 100)[10:]
        assert (await c.ok("fstat", fd=fd)).iatt.size == 1000
        assert (await c.ok("stat", loc=Loc(gfid=gfid))).iatt.size == 1000
        named = await c.ok("lookup", loc=Loc(pargfid=d.iatt.gfid, name="file"))
        assert named.iatt.gfid == gfid and named.postparent.gfid == d.iatt.gfid
        await c.ok("flush", fd=fd)
        await c.ok("fsync", fd=fd, datasync=0)
        assert (await c.ok("ftruncate", fd=fd, offset=100)).postbuf.size == 100
        assert (await c.ok("truncate", loc=Loc(gfid=gfid), offset=50)).postbuf.size == 50
        st = Iatt(mode=0o600)
        assert stat.S_IMODE((await c.ok("setattr", loc=Loc(gfid=gfid), stbuf=st,
                                        valid=SET_ATTR_MODE)).postbuf.mode) == 0o600
        assert stat.S_IMODE((await c.ok("fsetattr", fd=fd, stbuf=Iatt(mode=0o640),
                                        valid=SET_ATTR_MODE)).postbuf.mode) == 0o640
        await c.ok("fallocate", fd=fd, mode=0, offset=0, length=8192)
        await c.ok("zerofill", fd=fd, offset=0, length=10)
        await c.ok("discard", fd=fd, offset=4096, length=4096)
        assert (await c.ok("seek", fd=fd, offset=0, what=0)).offset == 0
        ck = await c.ok("rchecksum", fd=fd, offset=0, length=50)
        assert len(ck.strong) == 32  # SHA-256's length on the wire, as GlusterFS sends
        await c.ok("setxattr", loc=Loc(gfid=gfid), xattrs={"user.a": b"1"}, flags=0)
        await c.ok("fsetxattr", fd=fd, xattrs={"user.b": b"2"}, flags=0)
        assert (await c.ok("getxattr", loc=Loc(gfid=gfid), name="user.a")).dict == \
            {"user.a": b"1"}
        assert (await c.ok("fgetxattr", fd=fd, name="user.b")).dict == {"user.b": b"2"}
        await c.ok("removexattr", loc=Loc(gfid=gfid), name="user.a")
        await c.ok("fremovexattr", fd=fd, name="user.b")
        assert err(await c.fop("getxattr", loc=Loc(gfid=gfid), name="user.a")) == errno.ENODATA
        xo = await c.ok("xattrop", loc=Loc(gfid=gfid), optype=XattropType.ADD_ARRAY,
                        xattrs={"trusted.afr.x": bytes(12)})
        assert xo.dict["trusted.afr.x"] == bytes(12)
        await c.ok("fxattrop", fd=fd, optype=XattropType.ADD_ARRAY,
                   xattrs={"trusted.afr.x": (1).to_bytes(4, "big") + bytes(8)})
        await c.ok("access", loc=Loc(gfid=gfid), mask=os.R_OK)
        sl = await c.ok("symlink", linkname="file", loc=Loc(pargfid=d.iatt.gfid, name="sl"),
                        umask=0o022, xdata=gfid_req())
        assert (await c.ok("readlink", loc=Loc(gfid=sl.iatt.gfid), size=4096)).path == "file"
        await c.ok("link", oldloc=Loc(gfid=gfid), newloc=Loc(pargfid=ROOT_GFID, name="hard"))
        assert (brick / "hard").stat().st_ino == (brick / "dir" / "file").stat().st_ino
        await c.ok("rename", oldloc=Loc(pargfid=ROOT_GFID, name="hard"),
                   newloc=Loc(pargfid=d.iatt.gfid, name="hard2"))
        nod = await c.ok("mknod", loc=Loc(pargfid=ROOT_GFID, name="fifo"),
                         mode=stat.S_IFIFO | 0o644, rdev=0, umask=0, xdata=gfid_req())
        assert nod.iatt.type == stat.S_IFIFO
        od = await c.ok("opendir", loc=Loc(gfid=d.iatt.gfid))
        dfd = RemoteFd(d.iatt.gfid, od.fd.num)
        names = {e.name for e in (await c.ok("readdir", fd=dfd, size=4096, offset=0)).entries}
        assert {"file", "sl", "hard2"} <= names
        plus = (await c.ok("readdirp", fd=dfd, size=1 << 30, offset=0)).entries
        assert {e.name: e.iatt.gfid for e in plus if e.name == "file"} == {"file": gfid}
        await c.ok("fsyncdir", fd=dfd, datasync=0)
        await c.ok("releasedir", fd=dfd)
        assert (await c.ok("statfs", loc=Loc(gfid=ROOT_GFID))).statvfs.bsize > 0
        await c.ok("release", fd=fd)
        await c.ok("unlink", loc=Loc(pargfid=d.iatt.gfid, name="hard2"), xflags=0)
        await c.ok("unlink", loc=Loc(pargfid=d.iatt.gfid, name="sl"), xflags=0)
        await c.ok("unlink", loc=Loc(pargfid=d.iatt.gfid, name="file"), xflags=0)
        await c.ok("rmdir", loc=Loc(pargfid=ROOT_GFID, name="dir"), xflags=0)
        assert not (brick / "dir").exists()
        put = await c.ok("put", loc=Loc(pargfid=ROOT_GFID, name="put"), mode=0o644,
                         umask=0, flags=os.O_RDWR, data=b"put data", offset=0,
                         xattrs={"user.p": b"1"}, xdata=gfid_req())
        assert put.iatt.size == 8 and (brick / "put").read_bytes() == b"put data"
        # a fop storage/posix does not serve is ENOTSUP, not a crash
        assert err(await c.fop("icreate", loc=Loc(gfid=GFID.random()), mode=0o644)) == \
            errno.ENOTSUP
        assert b.open_fds() == 0


@pytest.mark.parametrize("stack", STACKS)
async def test_every_catalogue_fop_gets_a_fop_reply(brick, stack):
    """Whatever the arguments, every procedure of the 4.x program is answered
    with op_ret/op_errno (never SYSTEM_ERR): the server has a path for each."""
    async with running_brick(brick, locks=stack == "locks") as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        f = await create(c, "f")
        fd = RemoteFd(f.iatt.gfid, f.fd.num)
        values = {"loc": Loc(gfid=f.iatt.gfid), "oldloc": Loc(gfid=f.iatt.gfid),
                  "newloc": Loc(pargfid=ROOT_GFID, name="n"), "fd": fd, "fd_in": fd,
                  "fd_out": fd, "int": 0, "str": "", "dict": {}, "iatt": Iatt(),
                  "flock": Flock(owner=b"owner"), "lease": None, "list": [], "data": b"x"}
        for fop in CATALOGUE:
            if fop.name in ("release", "releasedir"):
                continue
            args = {a.name: values.get(a.name, values[a.kind]) for a in fop.args}
            if fop.name in ("open", "create", "opendir"):
                args.pop("fd")
            if fop.name in ("create", "mknod", "mkdir", "symlink", "put"):
                args["loc"] = Loc(pargfid=ROOT_GFID, name=f"new-{fop.name}")
            if fop.name in ("unlink", "rmdir"):
                args["loc"] = Loc(pargfid=ROOT_GFID, name="absent")
            if fop.name in ("readv", "readdir", "readdirp", "readlink"):
                args["size"] = 64
            if fop.name == "inodelk" or fop.name == "finodelk":
                args["cmd"] = LockCmd.SETLK
            resp = await c.fop(fop.name, **args)
            assert resp.op_ret >= -1, fop.name


async def test_resolution_errors(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        assert err(await c.fop("lookup", loc=Loc(pargfid=ROOT_GFID, name="a/b"))) == errno.EPERM
        assert err(await c.fop("lookup", loc=Loc(name="x"))) == errno.EINVAL
        assert err(await c.fop("lookup", loc=Loc())) == errno.EINVAL
        assert err(await c.fop("stat", loc=Loc())) == errno.EINVAL
        assert err(await c.fop("lookup", loc=Loc(gfid=GFID.random()))) in (errno.ENOENT,
                                                                           errno.ESTALE)
        assert err(await c.fop("readv", fd=RemoteFd(ROOT_GFID, 17), size=1, offset=0,
                               flags=0)) == errno.EBADF
        assert err(await c.fop("fstat", fd=RemoteFd(None, ANON_FD))) == errno.ENOENT
        # an unknown fd number is not an error for RELEASE (gf_fd_put)
        await c.ok("release", fd=RemoteFd(None, 99))


async def test_anonymous_fd_reads_and_writes_without_open(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        f = await create(c, "anon")
        await c.ok("release", fd=f.fd)
        anon = RemoteFd(f.iatt.gfid, ANON_FD)
        assert (await c.ok("writev", fd=anon, data=b"through the anonymous fd", offset=0,
                           flags=0)).count == 24
        assert bytes((await c.ok("readv", fd=anon, size=100, offset=8, flags=0)).data) == \
            b"the anonymous fd"
        assert (await c.ok("fstat", fd=anon)).iatt.size == 24
        assert b.open_fds() == 0  # each anonymous fd was released after its fop


async def test_caller_identity_reaches_the_graph(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        await c.ok("setattr", loc=Loc(gfid=ROOT_GFID), stbuf=Iatt(mode=0o777),
                   valid=SET_ATTR_MODE)
        user = Caller(uid=1234, gid=4321, groups=(4321,), pid=77, lk_owner=b"o1")
        made = await c.ok("create", loc=Loc(pargfid=ROOT_GFID, name="mine"), flags=os.O_RDWR,
                          mode=0o644, umask=0, xdata=gfid_req(), caller=user)
        assert (made.iatt.uid, made.iatt.gid) == (1234, 4321)
        st = (brick / "mine").stat()
        assert (st.st_uid, st.st_gid) == (1234, 4321)


async def test_root_squash_maps_root_to_anonuid(brick):
    opts = {"root-squash": "on", "anonuid": "3333", "anongid": "4444"}
    async with running_brick(brick, server_options=opts) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        await c.ok("setattr", loc=Loc(gfid=ROOT_GFID), stbuf=Iatt(mode=0o777),
                   valid=SET_ATTR_MODE)
        made = await create(c, "squashed")
        assert (made.iatt.uid, made.iatt.gid) == (3333, 4444)
        user = Caller(uid=1000, gid=1000, pid=5, lk_owner=b"x")
        other = await c.ok("create", loc=Loc(pargfid=ROOT_GFID, name="user"), flags=os.O_RDWR,
                           mode=0o644, umask=0, xdata=gfid_req(), caller=user)
        assert (other.iatt.uid, other.iatt.gid) == (1000, 1000)


async def test_a_connection_reuses_its_caller_until_the_credential_or_squash_changes(brick):
    """Issue 15: the same credential bytes decode to the same credential
    object, and the server makes its Caller once for it; root-squash turned
    on live applies to the very next call all the same, and another
    credential gets its own identity."""
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        await c.ok("setattr", loc=Loc(gfid=ROOT_GFID), stbuf=Iatt(mode=0o777),
                   valid=SET_ATTR_MODE)
        assert (await create(c, "a")).iatt.uid == 0
        (conn,) = b.server.connections
        first = conn.last_caller[3]
        assert (await create(c, "b")).iatt.uid == 0
        assert conn.last_caller[3] is first
        new = vf.parses(vf.dumps(b.graph.volfile))
        new["test-server"].options.update({"root-squash": "on", "anonuid": "3333",
                                           "anongid": "4444"})
        b.graph.reconfigure(new)
        made = await create(c, "c")
        assert (made.iatt.uid, made.iatt.gid) == (3333, 4444)
        user = Caller(uid=1000, gid=1000, pid=5, lk_owner=b"x")
        other = await c.ok("create", loc=Loc(pargfid=ROOT_GFID, name="user"), flags=os.O_RDWR,
                           mode=0o644, umask=0, xdata=gfid_req(), caller=user)
        assert (other.iatt.uid, other.iatt.gid) == (1000, 1000)
        assert (await create(c, "d")).iatt.uid == 3333


# -- clients and fd tables -------------------------------------------------------


async def test_fd_numbers_are_per_client_and_reused(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c1, raw_client(b.port) as c2:
        assert (await c1.setvolume(b.subvolume)).op_ret == 0
        assert (await c2.setvolume(b.subvolume)).op_ret == 0
        a = await create(c1, "a")
        bb = await create(c2, "b")
        assert a.fd.num == bb.fd.num == 0  # each table starts at 0
        second = await c1.ok("open", loc=Loc(gfid=a.iatt.gfid), flags=os.O_RDONLY)
        assert second.fd.num == 1
        # c2's fd 0 is its own file, not c1's
        await c2.ok("writev", fd=RemoteFd(bb.iatt.gfid, 0), data=b"bee", offset=0, flags=0)
        assert (brick / "b").read_bytes() == b"bee" and (brick / "a").read_bytes() == b""
        assert err(await c2.fop("fstat", fd=RemoteFd(a.iatt.gfid, 1))) == errno.EBADF
        await c1.ok("release", fd=a.fd)
        again = await c1.ok("open", loc=Loc(gfid=a.iatt.gfid), flags=os.O_RDONLY)
        assert again.fd.num == 0  # the lowest free number comes back
        assert b.open_fds() == 3


async def test_many_clients_at_once(brick):
    async with running_brick(brick) as b:
        async def one(i):
            async with raw_client(b.port) as c:
                assert (await c.setvolume(b.subvolume)).op_ret == 0
                f = await create(c, f"f{i}")
                fd = RemoteFd(f.iatt.gfid, f.fd.num)
                payload = os.urandom(64 * 1024 + i)
                for off in range(0, len(payload), 8192):
                    await c.ok("writev", fd=fd, data=payload[off:off + 8192], offset=off,
                               flags=0)
                back = await c.ok("readv", fd=fd, size=len(payload), offset=0, flags=0)
                assert bytes(back.data) == payload
                await c.ok("release", fd=fd)
        async with trio.open_nursery() as nursery:
            for i in range(24):
                nursery.start_soon(one, i)
        await wait_until(lambda: not b.server.clients)
        assert len(list(brick.glob("f*"))) == 24 and b.open_fds() == 0


async def test_disconnect_releases_the_clients_fds(brick):
    async with running_brick(brick) as b:
        async with raw_client(b.port) as keeper:
            assert (await keeper.setvolume(b.subvolume)).op_ret == 0
            kept = await create(keeper, "kept")
            async with raw_client(b.port) as c:
                assert (await c.setvolume(b.subvolume)).op_ret == 0
                for i in range(5):
                    await create(c, f"left-open-{i}")
                await c.ok("opendir", loc=Loc(gfid=ROOT_GFID))
                assert b.open_fds() == 7
                assert len(b.server.clients[c.process_uuid].fds) == 6
            await wait_until(lambda: b.open_fds() == 1)
            assert list(b.server.clients) == [keeper.process_uuid]
            # the other client's fd survived
            await keeper.ok("writev", fd=kept.fd._replace(gfid=kept.iatt.gfid), data=b"k",
                            offset=0, flags=0)
        await wait_until(lambda: b.open_fds() == 0 and not b.server.clients)


async def test_connections_with_one_process_uuid_share_a_client(brick):
    async with running_brick(brick) as b:
        async with raw_client(b.port) as c1:
            async with raw_client(b.port) as c2:
                c2.process_uuid = c1.process_uuid
                assert (await c1.setvolume(b.subvolume)).op_ret == 0
                assert (await c2.setvolume(b.subvolume)).op_ret == 0
                f = await create(c1, "shared")
                # the fd table is the client's: the other connection uses it
                await c2.ok("writev", fd=RemoteFd(f.iatt.gfid, f.fd.num), data=b"both",
                            offset=0, flags=0)
            await trio.sleep(0.05)
            assert b.open_fds() == 1  # one connection is still there
            assert len(b.server.clients[c1.process_uuid].connections) == 1
        await wait_until(lambda: b.open_fds() == 0 and not b.server.clients)


async def test_release_waits_for_fops_in_flight(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        f = await create(c, "busy")
        client = b.server.clients[c.process_uuid]
        entry = client.fds.get(f.fd.num)
        entry.refs += 1  # a fop is using the fd
        await c.ok("release", fd=f.fd)
        assert client.fds.get(f.fd.num) is None and b.open_fds() == 1
        await b.server._put_fds(client, "readv", [entry], [])  # the fop ends
        assert b.open_fds() == 0


# -- locks -------------------------------------------------------------------------


async def test_locks_get_connection_id_and_die_with_their_client(brick):
    async with running_brick(brick, locks=True) as b, raw_client(b.port) as other:
        assert (await other.setvolume(b.subvolume)).op_ret == 0
        f = await create(other, "locked")
        lock = Flock(type=LockType.WRLCK, start=0, len=0, owner=b"holder")
        async with raw_client(b.port) as holder:
            assert (await holder.setvolume(b.subvolume)).op_ret == 0
            await holder.ok("inodelk", volume="dom", loc=Loc(gfid=f.iatt.gfid),
                            cmd=LockCmd.SETLK, flock=lock)
            await holder.ok("entrylk", volume="dom", loc=Loc(gfid=ROOT_GFID),
                            basename="locked", cmd=EntrylkCmd.LOCK_NB,
                            type=EntrylkType.WRLCK)
            mine = Flock(type=LockType.WRLCK, start=0, len=0, owner=b"other")
            assert err(await other.fop("inodelk", volume="dom", loc=Loc(gfid=f.iatt.gfid),
                                       cmd=LockCmd.SETLK, flock=mine)) == errno.EAGAIN
        # the holder vanished: its locks went with it
        with trio.fail_after(5):
            await other.ok("inodelk", volume="dom", loc=Loc(gfid=f.iatt.gfid),
                           cmd=LockCmd.SETLKW, flock=mine)
            await other.ok("entrylk", volume="dom", loc=Loc(gfid=ROOT_GFID),
                           basename="locked", cmd=EntrylkCmd.LOCK, type=EntrylkType.WRLCK)


async def test_posix_alone_answers_lock_fops_enosys(brick):
    """Without features/locks the lock fops reach storage/posix (ENOSYS)."""
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        assert err(await c.fop("inodelk", volume="d", loc=Loc(gfid=ROOT_GFID),
                               cmd=LockCmd.SETLK, flock=Flock(owner=b"o"))) == errno.ENOSYS


# -- auth ------------------------------------------------------------------------


@pytest.mark.parametrize("options,accepted", [
    ({}, False),  # no auth option: no module accepts, as GlusterFS
    ({"auth.addr.{sub}.allow": "*"}, True),
    ({"auth.addr.{sub}.allow": "127.0.0.*"}, True),
    ({"auth.addr.{sub}.allow": "127.0.0.1"}, True),
    ({"auth.addr.{sub}.allow": "localhost"}, True),
    ({"auth.addr.{sub}.allow": "127.0.0.0/8"}, True),
    ({"auth.addr.{sub}.allow": "10.0.0.0/8,192.168.*"}, False),
    ({"auth.addr.{sub}.allow": "!10.0.0.0/8"}, True),
    ({"auth.addr.{sub}.allow": "*", "auth.addr.{sub}.reject": "127.0.0.1"}, False),
    ({"auth.addr.{sub}.allow": "*", "auth.addr.{sub}.reject": "10.*"}, True),
    ({"auth.addr.{sub}.allow": "/(127.0.0.1)"}, True),
    ({"auth.addr.{sub}.allow": "/other(127.0.0.1)"}, False),
    ({"auth.ip.{sub}.allow": "*"}, True),
    ({"auth.addr.{sub}.allow": "*", "rpc-auth-allow-insecure": "off"}, False),
])
async def test_auth_addr(brick, options, accepted):
    sub = "test-posix"
    opts = {k.format(sub=sub): v for k, v in options.items()}
    async with running_brick(brick, server_options=opts, allow=None) as b, \
            raw_client(b.port) as c:
        reply = await c.setvolume(sub)
        if accepted:
            assert reply.op_ret == 0
        else:
            assert (reply.op_ret, reply.op_errno, reply.text["ERROR"]) == \
                (-1, errno.EACCES, "Authentication failed")


LOGIN = {"auth.addr.test-posix.allow": "*", "auth.login.test-posix.allow": "alice,bob",
         "auth.login.alice.password": "s3cret"}


@pytest.mark.parametrize("options,creds,accepted", [
    (LOGIN, {"username": "alice", "password": "s3cret"}, True),
    (LOGIN, {"username": "alice", "password": "wrong"}, False),
    (LOGIN, {"username": "bob", "password": "any"}, False),  # listed, no password set
    (LOGIN, {"username": "eve", "password": "x"}, True),   # not listed: DONT_CARE
    (LOGIN, {}, True),                                      # untrusted client
    ({**LOGIN, "strict-auth-accept": "on"}, {}, False),
    ({**LOGIN, "strict-auth-accept": "on"}, {"username": "eve", "password": "x"}, False),
    ({"auth.login.test-posix.allow": "alice", "auth.login.alice.password": "s3cret"},
     {"username": "alice", "password": "s3cret"}, True),   # login alone accepts
])
async def test_auth_login(brick, options, creds, accepted):
    async with running_brick(brick, server_options=options, allow=None) as b, \
            raw_client(b.port) as c:
        reply = await c.setvolume(b.subvolume, **creds)
        assert (reply.op_ret == 0) is accepted
        if not accepted:
            assert reply.op_errno == errno.EACCES


async def test_wrong_password_is_refused_while_others_are_served(brick):
    async with running_brick(brick, server_options=LOGIN, allow=None) as b, \
            raw_client(b.port) as good:
        assert (await good.setvolume(b.subvolume, username="alice",
                                     password="s3cret")).op_ret == 0
        f = await create(good, "f")
        for _ in range(3):
            async with raw_client(b.port) as bad:
                reply = await bad.setvolume(b.subvolume, username="alice", password="guess")
                assert (reply.op_ret, reply.op_errno) == (-1, errno.EACCES)
                with pytest.raises(RpcCallFailed, match="GARBAGE_ARGS"):
                    await bad.fop("stat", loc=Loc(gfid=ROOT_GFID))
        await good.ok("writev", fd=RemoteFd(f.iatt.gfid, f.fd.num), data=b"fine", offset=0,
                      flags=0)
        assert list(b.server.clients) == [good.process_uuid]
        assert b.server.clients[good.process_uuid].username == "alice"


@pytest.mark.parametrize("squash", ["root-squash", "all-squash", None])
async def test_an_internal_pid_counts_only_from_a_logged_in_client_when_squashing(brick,
                                                                                  squash):
    """On a brick that squashes, the negative pid of a client that did not
    log in reaches the graph as 0 (it would pass access-control); a
    logged-in client keeps it, and so does every client without squashing."""
    opts = dict(LOGIN, **({squash: "on"} if squash else {}))
    async with running_brick(brick, server_options=opts, allow="*") as b, \
            raw_client(b.port) as rogue, raw_client(b.port) as trusted:
        assert (await rogue.setvolume(b.subvolume)).op_ret == 0
        assert (await trusted.setvolume(b.subvolume, username="alice",
                                        password="s3cret")).op_ret == 0
        seen = {}
        for name, c in (("rogue", rogue), ("trusted", trusted)):
            for pid in (ClientPid.GSYNCD, ClientPid.SELF_HEALD, 42):
                await c.ok("stat", loc=Loc(gfid=ROOT_GFID),
                           caller=Caller(uid=0, gid=0, pid=pid, lk_owner=b"o"))
                conn = next(x for x in b.server.connections
                            if x.client is b.server.clients[c.process_uuid])
                seen[name, int(pid)] = conn.last_caller[3].pid
        dropped = squash is not None
        assert seen == {("rogue", -1): 0 if dropped else -1,
                        ("rogue", -6): 0 if dropped else -6, ("rogue", 42): 42,
                        ("trusted", -1): -1, ("trusted", -6): -6, ("trusted", 42): 42}


async def test_a_rogue_cannot_borrow_a_logged_in_clients_process_uuid(brick):
    """Connections of one process-uuid share one client (and its trust);
    the uuid is no secret, so a connection that does not prove the same user
    is refused rather than joined to a logged-in client."""
    opts = dict(LOGIN, **{"root-squash": "on"})
    async with running_brick(brick, server_options=opts) as b, \
            raw_client(b.port) as trusted, raw_client(b.port) as rogue:
        assert (await trusted.setvolume(b.subvolume, username="alice",
                                        password="s3cret")).op_ret == 0
        reply = await rogue.setvolume(b.subvolume, **{"process-uuid": trusted.process_uuid})
        assert (reply.op_ret, reply.op_errno) == (-1, errno.EACCES)
        with pytest.raises(RpcCallFailed, match="GARBAGE_ARGS"):
            await rogue.fop("stat", loc=Loc(gfid=ROOT_GFID),
                            caller=Caller(pid=ClientPid.GSYNCD, lk_owner=b"o"))
        # nor with another user's name and a wrong password
        reply = await rogue.setvolume(b.subvolume, username="alice", password="guess",
                                      **{"process-uuid": trusted.process_uuid})
        assert (reply.op_ret, reply.op_errno) == (-1, errno.EACCES)
        # the client itself may connect again with its login
        async with raw_client(b.port) as again:
            assert (await again.setvolume(b.subvolume, username="alice", password="s3cret",
                                          **{"process-uuid": trusted.process_uuid})).op_ret == 0
        assert b.server.clients[trusted.process_uuid].username == "alice"
        await trusted.ok("stat", loc=Loc(gfid=ROOT_GFID))


async def test_dynamic_auth_disconnects_clients_the_new_rules_reject(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        new = vf.parses(vf.dumps(b.graph.volfile))
        new["test-server"].options["auth.addr.test-posix.reject"] = "127.0.0.1"
        b.graph.reconfigure(new)
        await wait_until(lambda: not b.server.clients)
        with pytest.raises(Exception):
            await c.fop("stat", loc=Loc(gfid=ROOT_GFID))


def test_bad_auth_values_are_refused_at_load(brick):
    text = brick_volfile(brick, server_options={"auth.addr.test-posix.reject": "10.0.0.0/99"})
    with pytest.raises(VolfileError, match="not a network"):
        Graph.from_text(text)
    with pytest.raises(VolfileError, match="ssl-cert-depth.*below the minimum"):
        Graph.from_text(brick_volfile(brick, server_options={
            "transport.socket.ssl-enabled": "on", "transport.socket.ssl-cert-depth": "-1"}))


# -- callbacks -----------------------------------------------------------------------


async def test_upcalls_reach_the_client(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c, raw_client(b.port) as other:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        assert (await other.setvolume(b.subvolume)).op_ret == 0
        client = b.server.clients[c.process_uuid]
        msg = CacheInvalidation(gfid=str(ROOT_GFID), event_type=1, flags=3)
        assert await b.server.send_upcall(client, msg) == 1
        await wait_until(lambda: c.callbacks)
        assert c.callbacks == [("CACHE_INVALIDATION", msg)]
        # the way a translator does it: Event.UPCALL travelling up the graph
        contention = InodelkContention(gfid=ROOT_GFID, flock=Flock(owner=b"x"), pid=1,
                                       domain="dom")
        b.posix.notify_parents(Event.UPCALL, Upcall(c.process_uuid, contention))
        await wait_until(lambda: len(c.callbacks) == 2)
        assert c.callbacks[1] == ("INODELK_CONTENTION", contention)
        assert other.callbacks == []  # only the named client hears it
        with pytest.raises(TypeError):
            await b.server.send_upcall(client, "not a message")
        assert await b.server.send_upcall("no-such-client", msg) == 0


async def test_child_down_and_up_are_called_back(brick):
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        b.posix.notify_parents(Event.CHILD_DOWN)
        await wait_until(lambda: c.callbacks)
        b.posix.notify_parents(Event.CHILD_UP)
        await wait_until(lambda: len(c.callbacks) == 2)
        assert [name for name, _ in c.callbacks] == ["CHILD_DOWN", "CHILD_UP"]


# -- the outstanding-call limit and CallRefused (rpc transport) --------------------


async def test_max_calls_bounds_calls_in_service(nursery):
    busy = 0
    peak = 0
    release = trio.Event()

    async def handler(endpoint, call):
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await release.wait()
        busy -= 1
        if call.args.gfs_id == 13:
            raise CallRefused(AcceptStat.GARBAGE_ARGS, "thirteen")
        return DumpReply()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client_stream = await trio.open_tcp_stream("127.0.0.1", port)
    server_stream = await listeners[0].accept()
    server = RpcEndpoint(server_stream, RpcConnection(), handler=handler, max_calls=3)
    client = RpcEndpoint(client_stream, RpcConnection())
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    results = []

    async def call(n):
        try:
            results.append(await client.call(DUMP.by_name("DUMP"), DumpRequest(gfs_id=n)))
        except RpcCallFailed as e:
            results.append(e)
    async with trio.open_nursery() as calls:
        for n in range(10, 20):
            calls.start_soon(call, n)
        await trio.sleep(0.2)
        assert peak == busy == 3  # the rest wait in the backlog
        release.set()
    assert peak == 3 and len(results) == 10
    refused = [r for r in results if isinstance(r, RpcCallFailed)]
    assert len(refused) == 1 and refused[0].reply.accept_stat == AcceptStat.GARBAGE_ARGS
    await client.aclose()
    await server.aclose()
    await listeners[0].aclose()


async def test_end_of_file_and_directory_hints_as_posix_gives_them(brick):
    """GlusterFS's posix puts ENOENT in op_errno beside a successful read
    that reaches the end of the file, and an empty readdir (distribute reads
    it); the GlusterFS 10 captures show them on the wire."""
    async with running_brick(brick) as b, raw_client(b.port) as c:
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        f = await create(c, "f")
        fd = RemoteFd(f.iatt.gfid, f.fd.num)
        await c.ok("writev", fd=fd, data=b"x" * 1000, offset=0, flags=0)
        middle = await c.fop("readv", fd=fd, size=100, offset=0, flags=0)
        assert (middle.op_ret, middle.op_errno) == (100, 0)
        end = await c.fop("readv", fd=fd, size=100, offset=900, flags=0)
        assert (end.op_ret, end.op_errno) == (100, errno.ENOENT)
        past = await c.fop("readv", fd=fd, size=100, offset=5000, flags=0)
        assert (past.op_ret, past.op_errno) == (0, errno.ENOENT)
        od = await c.ok("opendir", loc=Loc(gfid=ROOT_GFID))
        dfd = RemoteFd(ROOT_GFID, od.fd.num)
        offset = 0
        while True:
            resp = await c.fop("readdirp", fd=dfd, size=4096, offset=offset)
            if not resp.result.entries:
                assert (resp.op_ret, resp.op_errno) == (0, errno.ENOENT)
                break
            assert resp.op_errno == 0
            offset = resp.result.entries[-1].off


async def test_listens_on_ipv6(brick):
    opts = {"transport.address-family": "inet6", "transport.socket.bind-address": "::1"}
    async with running_brick(brick, server_options=opts) as b, raw_client(b.port, "::1") as c:
        assert b.server.address == "::1"
        assert (await c.setvolume(b.subvolume)).op_ret == 0
        assert b.server.clients[c.process_uuid].peer.host == "::1"


# -- PING under a slow disk ------------------------------------------------------------


SLOW_BRICK = """
volume slow-posix
    type storage/posix
    option directory {directory}
end-volume
volume slow-delay
    type debug/delay-gen
    option enable writev,fsync
    option delay-percentage 100%
    option delay-duration {delay_us}
    subvolumes slow-posix
end-volume
volume slow-server
    type protocol/server
    option transport.socket.listen-port 0
    option transport.socket.bind-address 127.0.0.1
    option auth.addr.slow-delay.allow *
    subvolumes slow-delay
end-volume
"""


@pytest.mark.parametrize("in_flight", [8, 100])
async def test_a_slow_disk_does_not_stall_ping(brick, in_flight):
    """Every write takes 3 s (debug/delay-gen below the server, as a slow
    disk): with writes in flight - a few, or more than the server's
    outstanding-rpc-limit (64) - a PING is still answered at once, so a
    client's ping timer never takes a busy brick for a dead one."""
    delay = 3.0
    graph = Graph.from_text(SLOW_BRICK.format(directory=brick, delay_us=int(delay * 1e6)))
    async with graph.running(), raw_client(graph.top.port) as c:
        assert (await c.setvolume("slow-delay")).op_ret == 0
        f = await create(c, "f")
        fd = RemoteFd(f.iatt.gfid, f.fd.num)
        done = []

        async def write(i):
            await c.ok("writev", fd=fd, data=b"x" * 4096, offset=i * 4096, flags=0)
            done.append(i)
        async with trio.open_nursery() as writes:
            for i in range(in_flight):
                writes.start_soon(write, i)
            await trio.sleep(0.3)   # all sent, the first ones in service
            for ping in (DUMP_PING, HANDSHAKE_PING):
                start = trio.current_time()
                assert (await c.call(ping, timeout=delay)).op_ret == 0
                assert trio.current_time() - start < 1.0, ping
            assert not done          # the writes are still at the "disk"
        assert len(done) == in_flight
