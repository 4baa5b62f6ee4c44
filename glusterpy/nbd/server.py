"""An NBD server over glusterpy's client library: a volume's image files as
Network Block Device exports named `VOL/PATH`.

One process serves any number of volumes on one port (`glusterpy nbd`,
started by glusterpyd for the volumes with `nbd.export on`).  A volume is
mounted through gfapi (its client volfile fetched from the volfile
servers) the first time an export of it is asked for, and stays mounted.

Protocol: the fixed newstyle handshake (NBD_FLAG_NO_ZEROES offered),
option haggling with EXPORT_NAME, ABORT, LIST, INFO, GO,
STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (the one
context is `base:allocation`), and STARTTLS when the server has a
certificate (client certificates required and verified against its CA
list; the negotiation starts over inside TLS, as the protocol says;
NBD_REP_ERR_UNSUP without one).  EXTENDED_HEADERS is not supported.  In
transmission: READ (a structured OFFSET_DATA chunk when structured
replies were negotiated, OFFSET_HOLE when what was read is all zeros),
WRITE, FLUSH (fsync), TRIM (discard: a punched hole on the brick),
WRITE_ZEROES (discard too, so zeros cost no space; with NO_HOLE,
zerofill, which keeps the range allocated), FUA on any of them
(fdatasync after the operation), BLOCK_STATUS for base:allocation from
SEEK_DATA/SEEK_HOLE on the file (data extents are not read to find
zeros), CACHE (accepted, nothing to do) and DISC.  Requests are served
concurrently, at most `MAX_INFLIGHT` per connection.

Every connection to the same image in this process shares one open file,
so a FLUSH on any of them is an fsync that covers the writes all of them
had acknowledged: the exports carry NBD_FLAG_CAN_MULTI_CONN.

Who gets in: an export of a volume is refused (NBD_REP_ERR_POLICY,
logged) to a client the volume's `auth.allow`/`auth.reject` do not admit
- the same rules, and the same matching code, as its bricks use.  A
volume with `tls` takes clients only after STARTTLS (NBD_REP_ERR_TLS_REQD
before, the SELECTIVETLS mode of the protocol), and with `ssl_allow` only
those whose certificate's common name matches one of its patterns
(auth.ssl-allow's syntax).  NBD_OPT_LIST shows only the volumes the
client may use.  When the policy changes (a reload), connections it no
longer admits are cut.

Bad input ends cleanly: an unknown export or a malformed option is an
option error reply; a request past the end, oversized or with unknown
flags is an NBD error reply on that request; a broken framing (bad
magic, an option or write longer than the server takes), a client silent
for `HANDSHAKE_TIMEOUT` during the handshake, or one that stops reading
its replies for `SEND_TIMEOUT` is disconnected.  Nothing of one
connection reaches another.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import struct
from dataclasses import dataclass
from typing import Callable

import trio

from ..gfapi.aio import SEEK_DATA, SEEK_HOLE, AsyncFile, AsyncVolume
from ..volfile import NOPERF_SUFFIX
from ..gfapi.exceptions import LibgfapiException
from . import proto as P

log = logging.getLogger("glusterpy.nbd")

#: the largest READ/WRITE/option payload taken (what qemu's server takes too)
MAX_PAYLOAD = 32 << 20
MAX_OPTION = 64 << 10
MAX_STRING = 4096
PREFERRED_BLOCK = 4096
MAX_INFLIGHT = 64
HANDSHAKE_TIMEOUT = 30.0
SEND_TIMEOUT = 60.0
#: block status answers at most this many extents (the spec's ceiling is 2^20)
MAX_EXTENTS = 1024
MAX_LIST = 1000
#: a structured READ at least this long that reads all zeros is answered as a hole
ZERO_CHECK_MIN = 4096
#: how long a volume that does not mount is retried before an export fails
MOUNT_RETRY = 5.0
IMAGE_SUFFIXES = (".img", ".raw", ".qcow2", ".qcow", ".vmdk", ".vdi", ".vhd", ".vhdx",
                  ".iso")
_KNOWN_CMD_FLAGS = (P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_DF | P.CMD_FLAG_REQ_ONE)


class ProtocolError(Exception):
    """The client broke the framing; the connection is dropped."""


class RequestError(Exception):
    """One request refused with an NBD error value."""

    def __init__(self, error: int, message: str):
        super().__init__(message)
        self.error = error


@dataclass
class VolumePolicy:
    """What the server is told about one exported volume."""

    name: str
    allow: str | None = "*"
    reject: str | None = None
    read_only: bool = False
    #: exports only over TLS (STARTTLS first)
    tls: bool = False
    #: fnmatch patterns of client certificate common names ("*": any verified one)
    ssl_allow: str | None = None

    def admits_name(self, common_name: str | None) -> bool:
        import fnmatch
        if not self.ssl_allow:
            return True
        patterns = [p for p in self.ssl_allow.replace(",", " ").split() if p]
        return common_name is not None and any(fnmatch.fnmatchcase(common_name, p)
                                               for p in patterns)

    def auth_config(self):
        from xlators.protocol.auth import AuthConfig
        opts = {}
        if self.allow:
            opts[f"auth.addr.{self.name}.allow"] = self.allow
        if self.reject:
            opts[f"auth.addr.{self.name}.reject"] = self.reject
        # NBD clients (qemu, nbd-client, libnbd) bind unprivileged ports
        return AuthConfig.from_options(opts, allow_insecure=True)

    async def admits(self, host: str, family: int) -> tuple[bool, str]:
        from xlators.protocol.auth import AuthResult, Peer, authenticate
        result, why = await authenticate(self.auth_config(), self.name, {},
                                         Peer(host, 0, family))
        return result is AuthResult.ACCEPT, why


def tls_context(cert: str, key: str, ca: str):
    """The server side of STARTTLS: our certificate chain, and clients'
    certificates required and verified against the CA list."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Reader:
    """Exact reads over a trio stream, with the leftover kept."""

    def __init__(self, stream: trio.abc.ReceiveStream):
        self.stream = stream
        self.buf = bytearray()

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("the client closed the connection")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class _Mounted:
    """A volume mounted for the server's life, in a task of its own (gfapi
    wants mount and umount in one task)."""

    def __init__(self, vol: AsyncVolume):
        self.vol = vol
        self.stop = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self.vol:
            task_status.started()
            await self.stop.wait()


class _Image:
    """One image file open in this process, shared by its connections."""

    def __init__(self, key: tuple[str, str, bool], file: AsyncFile):
        self.key = key
        self.file = file
        self.refs = 0


class NbdServer:
    """The server: volumes by name, their policies, the listening socket."""

    def __init__(self, policies: dict[str, VolumePolicy],
                 open_volume: Callable[[str], AsyncVolume], tls_context=None):
        self.policies = policies
        #: ssl.SSLContext (server side) for STARTTLS; None: no TLS offered
        self.tls_context = tls_context
        self.open_volume = open_volume
        self._mounted: dict[str, _Mounted] = {}
        self._mount_lock = trio.Lock()
        self._images: dict[tuple[str, str, bool], _Image] = {}
        self._image_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.connections: set[_Connection] = set()
        self.port: int | None = None

    @classmethod
    def from_servers(cls, policies: dict[str, VolumePolicy], hosts, port: int,
                     tls_context=None) -> "NbdServer":
        # the volume's graph without performance translators (volfile-id
        # VOL.noperf): a block server must not acknowledge a write that is
        # only in its own memory (write-behind) - a killed server would lose
        # it - and the guest above caches reads itself
        return cls(policies,
                   lambda name: AsyncVolume.from_server(hosts, name + NOPERF_SUFFIX,
                                                        port),
                   tls_context)

    async def serve(self, port: int, host: str | None = None, *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=128)
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.serve_listeners, self._handle, listeners)
                task_status.started(self.port)
        finally:
            self._nursery = None
            for m in self._mounted.values():
                m.stop.set()

    async def reload(self, policies: dict[str, VolumePolicy]) -> None:
        """New policies: volumes gone or connections no longer admitted are cut."""
        self.policies = policies
        for conn in list(self.connections):
            pol = policies.get(conn.volume) if conn.volume else None
            if conn.volume is None:
                continue
            ok = pol is not None and (await pol.admits(conn.host, conn.family))[0] \
                and (pol.read_only is False or conn.read_only) \
                and (not pol.tls or conn.tls) and pol.admits_name(conn.common_name)
            if not ok:
                log.info("%s: export %s/%s no longer admitted; disconnecting", conn.peer,
                         conn.volume, conn.path)
                conn.scope.cancel()
        for name in list(self._mounted):
            if name not in policies and not any(i.key[0] == name for i in self._images.values()):
                self._mounted.pop(name).stop.set()

    # -- volumes and images -------------------------------------------------

    async def volume(self, name: str) -> AsyncVolume:
        async with self._mount_lock:
            m = self._mounted.get(name)
            if m is not None and m.vol.mounted:
                return m.vol
            # a brick restarting (volume set of a key that needs it) refuses
            # connections for a moment: that is a retry, not a failed export
            deadline = trio.current_time() + MOUNT_RETRY
            while True:
                m = _Mounted(self.open_volume(name))
                try:
                    await self._nursery.start(m.run)
                    break
                except BaseExceptionGroup as group:
                    leaf = group
                    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                        leaf = leaf.exceptions[0]
                    if not isinstance(leaf, LibgfapiException) or \
                            trio.current_time() > deadline:
                        raise leaf from None
                    log.info("volume %s: mount failed (%s); trying again", name, leaf)
                    await trio.sleep(0.5)
            self._mounted[name] = m
            return m.vol

    async def open_image(self, name: str, path: str, read_only: bool) -> _Image:
        try:
            return await self._open_image(name, path, read_only)
        except OSError as e:
            if e.errno != errno.ENOTCONN or any(k[0] == name for k in self._images):
                raise
        # the mount lost its bricks for good (a brick refused it, say, while
        # auth.allow left this node out): mount the volume afresh, once
        log.warning("volume %s: its mount is not connected; mounting it again", name)
        old = self._mounted.pop(name, None)
        if old is not None:
            old.stop.set()
        return await self._open_image(name, path, read_only)

    async def _open_image(self, name: str, path: str, read_only: bool) -> _Image:
        key = (name, path, read_only)
        async with self._image_lock:
            img = self._images.get(key)
            if img is None:
                vol = await self.volume(name)
                st = await vol.stat(path)
                if not (st.st_mode & 0o170000 == 0o100000):
                    raise OSError(errno.EISDIR if st.st_mode & 0o040000 else errno.EINVAL,
                                  "not a regular file", path)
                f = await vol.open(path, os.O_RDONLY if read_only else os.O_RDWR)
                img = _Image(key, f)
                self._images[key] = img
            img.refs += 1
            return img

    async def close_image(self, img: _Image) -> None:
        async with self._image_lock:
            img.refs -= 1
            if img.refs == 0 and self._images.get(img.key) is img:
                del self._images[img.key]
                with trio.CancelScope(shield=True):
                    try:
                        await img.file.close()
                    except OSError as e:
                        log.warning("closing %s/%s: %s", img.key[0], img.key[1], e)

    async def list_images(self, name: str, limit: int = MAX_LIST) -> list[str]:
        """A volume's image files: regular files in its top two levels,
        skipping glusterpy's own directories."""
        vol = await self.volume(name)
        out: list[str] = []

        async def walk(d: str, depth: int) -> None:
            for entry_name, st in await vol.listdir_with_stat(d):
                if len(out) >= limit or entry_name in (".", "..") or entry_name.startswith("."):
                    continue
                path = posixpath.join(d, entry_name)
                if st.st_mode & 0o170000 == 0o100000:
                    out.append(path.lstrip("/"))
                elif st.st_mode & 0o170000 == 0o040000 and depth < 2:
                    await walk(path, depth + 1)
        await walk("/", 1)
        return sorted(out)

    # -- connections ----------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = _Connection(self, stream)
        self.connections.add(conn)
        try:
            with conn.scope:
                await conn.run()
        except (EOFError, ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.TooSlowError, ConnectionError) as e:
            log.info("%s: disconnected: %s", conn.peer, e or type(e).__name__)
        except Exception:
            log.exception("%s: connection failed", conn.peer)
        finally:
            self.connections.discard(conn)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(10):
                    if conn.image is not None:
                        await self.close_image(conn.image)
                with trio.move_on_after(1):
                    await conn.stream.aclose()


def split_export_name(name: str) -> tuple[str, str] | None:
    """`VOL/PATH` (a leading slash allowed, as URIs carry it) -> (VOL, /PATH);
    None when it is not of that form or climbs out with '..'."""
    name = name.lstrip("/")
    vol, sep, path = name.partition("/")
    if not vol or not sep or not path.strip("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\0" in name:
        return None
    return vol, "/" + "/".join(parts)


class _Connection:
    def __init__(self, server: NbdServer, stream: trio.SocketStream):
        self.server = server
        self.stream = stream
        self.reader = _Reader(stream)
        self.scope = trio.CancelScope()
        addr = stream.socket.getpeername()
        self.family = stream.socket.family
        self.host = addr[0] if isinstance(addr, tuple) else str(addr)
        self.peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        self.no_zeroes = False
        self.tls = False
        self.common_name: str | None = None
        self.structured = False
        #: the export SET_META_CONTEXT named and whether base:allocation was chosen
        self.meta_export: str | None = None
        self.allocation_id: int | None = None
        self.volume: str | None = None
        self.path: str | None = None
        self.read_only = False
        self.image: _Image | None = None
        self.size = 0
        self._send_lock = trio.Lock()
        self._inflight = trio.Semaphore(MAX_INFLIGHT)

    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            # a client that stops reading holds only its own connection
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(data)

    async def run(self) -> None:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await self.send(P.HANDSHAKE.pack(P.NBDMAGIC, P.IHAVEOPT,
                                             P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES))
            (client_flags,) = struct.unpack(">I", await self.reader.exactly(4))
            if client_flags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES):
                raise ProtocolError(f"unknown client flags {client_flags:#x}")
            self.no_zeroes = bool(client_flags & P.FLAG_C_NO_ZEROES)
            if not await self.negotiate():
                return
        log.info("%s: serving %s:%s (%d bytes%s%s)", self.peer, self.volume, self.path,
                 self.size, ", read-only" if self.read_only else "",
                 ", structured replies" if self.structured else "")
        await self.transmission()

    # -- option haggling --------------------------------------------------------

    async def negotiate(self) -> bool:
        """Options until one enters transmission (True) or the client leaves."""
        while True:
            magic, option, length = P.OPTION_HEADER.unpack(await self.reader.exactly(16))
            if magic != P.IHAVEOPT:
                raise ProtocolError(f"bad option magic {magic:#x}")
            if length > MAX_OPTION:
                raise ProtocolError(f"option {option} of {length} bytes")
            data = await self.reader.exactly(length)
            if option == P.OPT_EXPORT_NAME:
                return await self.opt_export_name(data)
            if option == P.OPT_ABORT:
                try:
                    await self.send(P.option_reply(option, P.REP_ACK))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                return False
            handler = {P.OPT_LIST: self.opt_list, P.OPT_STARTTLS: self.opt_starttls,
                       P.OPT_INFO: self.opt_info_go, P.OPT_GO: self.opt_info_go,
                       P.OPT_STRUCTURED_REPLY: self.opt_structured,
                       P.OPT_LIST_META_CONTEXT: self.opt_meta_context,
                       P.OPT_SET_META_CONTEXT: self.opt_meta_context}.get(option)
            if handler is None:
                await self.opt_error(option, P.REP_ERR_UNSUP, f"option {option} not supported")
                continue
            try:
                if await handler(option, data):
                    return True
            except _OptionInvalid as e:
                await self.opt_error(option, P.REP_ERR_INVALID, str(e))

    async def opt_error(self, option: int, reply: int, message: str) -> None:
        await self.send(P.option_reply(option, reply, message.encode()[:MAX_STRING]))

    async def _resolve(self, name: str) -> tuple[int, str] | tuple[None, tuple]:
        """(error reply, message) or (None, (policy, volume, path))."""
        parsed = split_export_name(name)
        if parsed is None:
            return P.REP_ERR_UNKNOWN, f"export {name!r}: expected VOLUME/PATH"
        vol, path = parsed
        pol = self.server.policies.get(vol)
        if pol is None:
            return P.REP_ERR_UNKNOWN, f"volume {vol} is not exported here"
        if pol.tls and not self.tls:
            return P.REP_ERR_TLS_REQD, f"volume {vol} is exported over TLS only (STARTTLS)"
        if not pol.admits_name(self.common_name):
            log.warning("%s: export %s refused: certificate name %r not in auth.ssl-allow",
                        self.peer, name, self.common_name)
            return P.REP_ERR_POLICY, f"certificate {self.common_name!r} may not use volume {vol}"
        ok, why = await pol.admits(self.host, self.family)
        if not ok:
            log.warning("%s: export %s refused: %s", self.peer, name, why)
            return P.REP_ERR_POLICY, f"{self.host} may not use volume {vol}"
        return None, (pol, vol, path)

    async def opt_export_name(self, data: bytes) -> bool:
        name = data.decode(errors="replace")
        err, found = await self._resolve(name)
        if err is not None:
            raise ProtocolError(f"EXPORT_NAME {name!r}: {found}")
        try:
            await self._open(*found)
        except OSError as e:
            raise ProtocolError(f"EXPORT_NAME {name!r}: {e}") from None
        # NBD_OPT_EXPORT_NAME predates structured replies' negotiation order
        if self.meta_export is not None and self.meta_export != name:
            self.allocation_id = None
        await self.send(struct.pack(">QH", self.size, self._flags())
                        + (b"" if self.no_zeroes else bytes(124)))
        return True

    async def _open(self, pol: VolumePolicy, vol: str, path: str) -> None:
        img = await self.server.open_image(vol, path, pol.read_only)
        try:
            st = await img.file.fstat()
        except BaseException:
            await self.server.close_image(img)
            raise
        self.image, self.volume, self.path = img, vol, path
        self.read_only = pol.read_only
        self.size = st.st_size

    def _flags(self) -> int:
        flags = P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA | P.FLAG_SEND_DF \
            | P.FLAG_CAN_MULTI_CONN
        if self.read_only:
            flags |= P.FLAG_READ_ONLY
        else:
            flags |= P.FLAG_SEND_TRIM | P.FLAG_SEND_WRITE_ZEROES
        return flags

    async def opt_list(self, option: int, data: bytes) -> bool:
        if data:
            raise _OptionInvalid("NBD_OPT_LIST takes no data")
        names: list[str] = []
        for vol, pol in sorted(self.server.policies.items()):
            if pol.tls and not self.tls or not pol.admits_name(self.common_name) or \
                    not (await pol.admits(self.host, self.family))[0]:
                continue
            try:
                images = await self.server.list_images(vol)
            except Exception as e:  # a volume that cannot be mounted is left out
                log.warning("%s: listing volume %s: %s", self.peer, vol, e)
                continue
            names.extend(f"{vol}/{p}" for p in images)
        for n in names[:MAX_LIST]:
            raw = n.encode()
            await self.send(P.option_reply(option, P.REP_SERVER,
                                           struct.pack(">I", len(raw)) + raw))
        await self.send(P.option_reply(option, P.REP_ACK))
        return False

    async def opt_starttls(self, option: int, data: bytes) -> bool:
        if data:
            raise _OptionInvalid("NBD_OPT_STARTTLS takes no data")
        if self.server.tls_context is None:
            await self.opt_error(option, P.REP_ERR_UNSUP, "this server has no certificate")
            return False
        if self.tls:
            raise _OptionInvalid("TLS is on already")
        if self.reader.buf:
            raise ProtocolError("data sent after STARTTLS before the TLS handshake")
        await self.send(P.option_reply(option, P.REP_ACK))
        stream = trio.SSLStream(self.stream, self.server.tls_context, server_side=True)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as e:
            raise ProtocolError(f"TLS handshake failed: {e.__cause__ or e}") from None
        self.stream, self.reader, self.tls = stream, _Reader(stream), True
        cert = stream.getpeercert() or {}
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    self.common_name = value
        # what was negotiated in the clear does not carry over (proto.md)
        self.structured, self.meta_export, self.allocation_id = False, None, None
        log.info("%s: TLS on, client certificate %r", self.peer, self.common_name)
        return False

    async def opt_structured(self, option: int, data: bytes) -> bool:
        if data:
            raise _OptionInvalid("NBD_OPT_STRUCTURED_REPLY takes no data")
        self.structured = True
        await self.send(P.option_reply(option, P.REP_ACK))
        return False

    async def opt_info_go(self, option: int, data: bytes) -> bool:
        if len(data) < 6:
            raise _OptionInvalid("short NBD_OPT_INFO/GO")
        (nlen,) = struct.unpack_from(">I", data)
        if nlen > MAX_STRING:
            await self.opt_error(option, P.REP_ERR_TOO_BIG, "export name too long")
            return False
        if len(data) < 4 + nlen + 2:
            raise _OptionInvalid("NBD_OPT_INFO/GO: name longer than the option")
        name = data[4:4 + nlen].decode(errors="replace")
        (count,) = struct.unpack_from(">H", data, 4 + nlen)
        if len(data) != 4 + nlen + 2 + 2 * count:
            raise _OptionInvalid("NBD_OPT_INFO/GO: information requests do not fit")
        wanted = set(struct.unpack_from(f">{count}H", data, 6 + nlen))
        err, found = await self._resolve(name)
        if err is not None:
            await self.opt_error(option, err, found)
            return False
        if self.image is not None:  # an earlier INFO's image: this one replaces it
            await self.server.close_image(self.image)
            self.image = None
        try:
            await self._open(*found)
        except OSError as e:
            reply = P.REP_ERR_UNKNOWN if e.errno in (errno.ENOENT, errno.EISDIR, errno.EINVAL,
                                                     errno.ENOTDIR) else P.REP_ERR_PLATFORM
            await self.opt_error(option, reply, f"export {name}: {e.strerror or e}")
            return False
        except Exception as e:  # the volume did not mount
            await self.opt_error(option, P.REP_ERR_PLATFORM, f"export {name}: {e}")
            return False
        try:
            if P.INFO_NAME in wanted:
                raw = name.encode()
                await self.send(P.option_reply(option, P.REP_INFO,
                                               struct.pack(">H", P.INFO_NAME) + raw))
            await self.send(P.option_reply(option, P.REP_INFO, struct.pack(
                ">HIII", P.INFO_BLOCK_SIZE, 1, PREFERRED_BLOCK, MAX_PAYLOAD)))
            await self.send(P.option_reply(option, P.REP_INFO, struct.pack(
                ">HQH", P.INFO_EXPORT, self.size, self._flags())))
            await self.send(P.option_reply(option, P.REP_ACK))
        except BaseException:
            await self.server.close_image(self.image)
            self.image = None
            raise
        if option == P.OPT_INFO:
            await self.server.close_image(self.image)
            self.image = None
            return False
        if self.meta_export != name:
            self.allocation_id = None
        return True

    async def opt_meta_context(self, option: int, data: bytes) -> bool:
        setting = option == P.OPT_SET_META_CONTEXT
        if setting and not self.structured:
            raise _OptionInvalid("NBD_OPT_SET_META_CONTEXT needs structured replies first")
        try:
            (nlen,) = struct.unpack_from(">I", data)
            name = data[4:4 + nlen].decode(errors="replace")
            if len(data) < 4 + nlen + 4 or nlen > MAX_STRING:
                raise struct.error
            (count,) = struct.unpack_from(">I", data, 4 + nlen)
            pos, queries = 8 + nlen, []
            for _ in range(count):
                (qlen,) = struct.unpack_from(">I", data, pos)
                if qlen > MAX_STRING or pos + 4 + qlen > len(data):
                    raise struct.error
                queries.append(data[pos + 4:pos + 4 + qlen].decode(errors="replace"))
                pos += 4 + qlen
            if pos != len(data):
                raise struct.error
        except struct.error:
            raise _OptionInvalid("malformed meta context option") from None
        err, found = await self._resolve(name)
        if err is not None:
            await self.opt_error(option, err, found)
            return False
        if setting:
            self.meta_export, self.allocation_id = name, None
        matched = any(q == P.BASE_ALLOCATION for q in queries) or \
            not setting and (not queries or any(q == "base:" for q in queries))
        if matched:
            ctx_id = 1 if setting else 0
            if setting:
                self.allocation_id = ctx_id
            raw = P.BASE_ALLOCATION.encode()
            await self.send(P.option_reply(option, P.REP_META_CONTEXT,
                                           struct.pack(">I", ctx_id) + raw))
        await self.send(P.option_reply(option, P.REP_ACK))
        return False

    # -- transmission -----------------------------------------------------------

    async def transmission(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                header = await self.reader.exactly(P.REQUEST.size)
                magic, flags, cmd, cookie, offset, length = P.REQUEST.unpack(header)
                if magic != P.REQUEST_MAGIC:
                    raise ProtocolError(f"bad request magic {magic:#x}")
                payload = None
                if cmd == P.CMD_WRITE:
                    if length > MAX_PAYLOAD:
                        # the payload cannot be skipped cheaply: say why, then hang up
                        await self.send_error(cmd, cookie, P.EINVAL,
                                              f"write of {length} bytes: the most is "
                                              f"{MAX_PAYLOAD}")
                        raise ProtocolError(f"write of {length} bytes")
                    payload = await self.reader.exactly(length)
                elif cmd == P.CMD_DISC:
                    log.info("%s: client disconnects", self.peer)
                    return  # the nursery waits for the requests in flight
                await self._inflight.acquire()
                nursery.start_soon(self.request, cmd, flags, cookie, offset, length, payload)

    async def send_error(self, cmd: int, cookie: int, error: int, message: str) -> None:
        if self.structured:
            await self.send(P.error_chunk(cookie, error, message))
        else:
            await self.send(P.simple_reply(cookie, error))

    async def request(self, cmd, flags, cookie, offset, length, payload) -> None:
        try:
            try:
                await self.dispatch(cmd, flags, cookie, offset, length, payload)
            except RequestError as e:
                log.debug("%s: %s refused: %s", self.peer, P.NAMES.get(cmd, cmd), e)
                await self.send_error(cmd, cookie, e.error, str(e))
            except OSError as e:
                log.warning("%s: %s at %d+%d failed: %s", self.peer, P.NAMES.get(cmd, cmd),
                            offset, length, e)
                await self.send_error(cmd, cookie, P.wire_errno(e.errno),
                                      e.strerror or str(e))
        finally:
            self._inflight.release()

    def _check(self, cmd, flags, offset, length, *, writes: bool) -> None:
        if writes and self.read_only:
            raise RequestError(P.EPERM, "the export is read-only")
        if offset + length > self.size:
            raise RequestError(P.EINVAL, f"{offset}+{length} is past the end ({self.size})")

    async def dispatch(self, cmd, flags, cookie, offset, length, payload) -> None:
        f = self.image.file
        if flags & ~_KNOWN_CMD_FLAGS:
            raise RequestError(P.EINVAL, f"unknown command flags {flags:#x}")
        if cmd == P.CMD_READ:
            self._check(cmd, flags, offset, length, writes=False)
            if length > MAX_PAYLOAD:
                raise RequestError(P.EINVAL, f"read of {length} bytes: the most is "
                                             f"{MAX_PAYLOAD}")
            data = await self._read(f, offset, length)
            if self.structured and length >= ZERO_CHECK_MIN and data == bytes(length):
                # zeros (a hole, mostly) cross the wire as 12 bytes, not `length`
                await self.send(P.chunk(cookie, P.REPLY_TYPE_OFFSET_HOLE,
                                        struct.pack(">QI", offset, length)))
            elif self.structured:
                await self.send(P.chunk(cookie, P.REPLY_TYPE_OFFSET_DATA,
                                        struct.pack(">Q", offset) + data))
            else:
                await self.send(P.simple_reply(cookie) + data)
            return
        if cmd == P.CMD_WRITE:
            self._check(cmd, flags, offset, length, writes=True)
            done = 0
            view = memoryview(payload)
            while done < length:
                done += await f.pwrite(view[done:], offset + done)
        elif cmd == P.CMD_FLUSH:
            await f.fsync()
        elif cmd == P.CMD_TRIM:
            self._check(cmd, flags, offset, length, writes=True)
            if length:
                try:
                    await f.discard(offset, length)
                except OSError as e:
                    # a trim is advice: a volume that cannot punch keeps its data
                    if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
        elif cmd == P.CMD_WRITE_ZEROES:
            self._check(cmd, flags, offset, length, writes=True)
            if length:
                await self._write_zeroes(f, offset, length, bool(flags & P.CMD_FLAG_NO_HOLE))
        elif cmd == P.CMD_BLOCK_STATUS:
            self._check(cmd, flags, offset, length, writes=False)
            if not self.structured or self.allocation_id is None:
                raise RequestError(P.EINVAL, "no meta context was negotiated")
            extents = await self._extents(f, offset, length, bool(flags & P.CMD_FLAG_REQ_ONE))
            body = struct.pack(">I", self.allocation_id) + b"".join(
                struct.pack(">II", n, s) for n, s in extents)
            await self.send(P.chunk(cookie, P.REPLY_TYPE_BLOCK_STATUS, body))
            return
        elif cmd == P.CMD_CACHE:
            self._check(cmd, flags, offset, length, writes=False)
        else:
            raise RequestError(P.EINVAL, f"unknown command {cmd}")
        if flags & P.CMD_FLAG_FUA and cmd in (P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES):
            await f.fdatasync()
        await self.send(P.simple_reply(cookie))

    async def _read(self, f: AsyncFile, offset: int, length: int) -> bytes:
        parts, done = [], 0
        while done < length:
            data = await f.pread(length - done, offset + done)
            if not data:  # the file shrank under us: what is not there reads as zeros
                parts.append(bytes(length - done))
                break
            parts.append(data)
            done += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _write_zeroes(self, f: AsyncFile, offset: int, length: int,
                            no_hole: bool) -> None:
        if not no_hole:
            try:
                await f.discard(offset, length)  # a punched hole reads as zeros
                return
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
        try:
            await f.zerofill(offset, length)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            step = 1 << 20
            for pos in range(offset, offset + length, step):
                n = min(step, offset + length - pos)
                await f.pwrite(bytes(n), pos)

    async def _extents(self, f: AsyncFile, offset: int, length: int,
                       req_one: bool) -> list[tuple[int, int]]:
        """base:allocation from SEEK_DATA/SEEK_HOLE: (length, flags) pairs
        from `offset`, covering at least one byte and at most the export."""
        end = self.size
        want = min(offset + length, end) if req_one else end
        hole = P.STATE_HOLE | P.STATE_ZERO
        out: list[tuple[int, int]] = []
        pos = offset
        try:
            while pos < offset + length and pos < end and len(out) < MAX_EXTENTS:
                try:
                    data = await f.lseek(pos, SEEK_DATA)
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise
                    data = end  # a hole up to the end of the file
                if data > pos:
                    stop = min(data, want)
                    out.append((stop - pos, hole))
                    pos = stop
                else:
                    stop = min(await f.lseek(pos, SEEK_HOLE), want)
                    out.append((stop - pos, 0))
                    pos = stop
                if req_one:
                    break
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            # no seek on this volume: everything is data, which is always safe to say
            return [(min(offset + length, end) - offset, 0)]
        if req_one and out:
            n, s = out[0]
            out = [(min(n, length), s)]
        # a zero-length extent would stall the client
        return [(n, s) for n, s in out if n > 0] or [(min(length, end - offset) or 1, 0)]


class _OptionInvalid(Exception):
    pass


__all__ = ["NbdServer", "VolumePolicy", "split_export_name", "ProtocolError", "tls_context"]
