"""Typed records of what glusterpyd stores: a volume and its bricks.

A volume is kept on disk as one JSON document (glusterd/store.py,
WORKDIR/vols/NAME/info.json; its keys are described in glusterd/ops.py) and
travels between peers in the same form inside a plan and a join; in
glusterpyd it is a `Volume` (gd.volumes, what ops.prepare_* compute, what
volgen builds volfiles from).  `from_json` reads a document, `to_json`
gives it back with the same keys - a key a document did not have (an
optional one: a brick's "arbiter" and "metadata", a volume's "device",
"profile", "username" and "password") stays absent, and a key these records do not know (written by
a newer glusterpy) is kept in `extra` and written back - so a store
written before loads, and what is written loads in the code before the
records (tests/test_glusterd_model.py checks both against documents in
that format).

The only keys `to_json` adds are the core ones a document from an older
glusterpy may lack, with the values its readers assumed ("tasks": {},
"version", "arbiter", "stripe", "transport" as a volume is created).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Brick", "Session", "Volume", "new_credentials"]


def new_credentials() -> tuple[str, str]:
    """A volume's internal user name and password, made once (volume
    create, or the first operation on a volume without them) and carried
    to every node with the volume's document: random uuids, as glusterd
    makes them (glusterd_volinfo_new's gf_uuid_generate)."""
    return str(uuid.uuid4()), str(uuid.uuid4())


@dataclass
class Brick:
    """One brick of a volume: where it is (the host as the user named it,
    the directory or, for `device lv`, /VG), the uuid of the node that owns
    it, and the port it listens on (0 until staged)."""

    host: str
    path: str
    node: str
    port: int = 0
    #: True for a replica set's arbiter brick; None: the key is absent
    arbiter: bool | None = None
    #: storage/bd's companion directory (device lv); None: absent
    metadata: str | None = None
    #: keys this version does not know, written back as they were
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("host", "path", "node", "port", "arbiter", "metadata")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Brick:
        return cls(host=doc["host"], path=doc["path"], node=doc["node"],
                   port=doc.get("port", 0), arbiter=doc.get("arbiter"),
                   metadata=doc.get("metadata"),
                   extra={k: copy.deepcopy(v) for k, v in doc.items() if k not in cls._KEYS})

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"host": self.host, "path": self.path, "node": self.node,
                               "port": self.port}
        if self.arbiter is not None:
            doc["arbiter"] = self.arbiter
        if self.metadata is not None:
            doc["metadata"] = self.metadata
        doc.update(copy.deepcopy(self.extra))
        return doc


@dataclass
class Session:
    """A geo-replication session of a volume (the primary) to a volume of
    another cluster (the secondary), kept in the primary's document under
    "georep", keyed by `key` ("HOST::VOLUME" as the user named it, with
    ":PORT" when the secondary's glusterpyd is not on 24007) - so it travels
    with the volume through every transaction, join and restore, as
    glusterd's geo-replication/PRIMARY_HOST_SECONDARY directory travels
    with the pool's state.  glusterpy/glusterd/georep.py describes the keys."""

    key: str
    id: str
    secondary_host: str
    secondary_volume: str
    secondary_port: int = 24007
    secondary_user: str = "root"
    #: the secondary volume's uuid (GET_VOLUME_INFO at create)
    secondary_id: str = ""
    #: every host of the secondary the workers may use, the named one first
    secondary_hosts: list[str] = field(default_factory=list)
    #: Created, Started, Paused or Stopped
    status: str = "Created"
    #: `config KEY VALUE` as given (georep.CONFIG declares the keys)
    config: dict[str, str] = field(default_factory=dict)
    #: `config checkpoint now`: the time (seconds) the checkpoint was set
    checkpoint: float | None = None
    #: `create push-pem`: the secondary's CA list (PEM), which the workers
    #: trust for its bricks (glusterd/georep_pem.py); "" without push-pem
    secondary_ca: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("key", "id", "secondary_host", "secondary_volume", "secondary_port",
             "secondary_user", "secondary_id", "secondary_hosts", "status", "config",
             "checkpoint", "secondary_ca")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Session:
        return cls(**{k: copy.deepcopy(doc[k]) for k in cls._KEYS if k in doc},
                   extra={k: copy.deepcopy(v) for k, v in doc.items() if k not in cls._KEYS})

    def to_json(self) -> dict[str, Any]:
        doc = {k: copy.deepcopy(getattr(self, k)) for k in self._KEYS}
        doc.update(copy.deepcopy(self.extra))
        return doc


@dataclass
class Volume:
    """A volume's definition, as `ops.prepare_*` computes it and every node
    stores it.  `options` are `volume set` keys and their values as given;
    `tasks` holds the migration tasks ("rebalance", "remove-brick") as the
    documents glusterd/rebalance.py makes."""

    name: str
    id: str
    #: Created, Started or Stopped
    status: str = "Created"
    replica: int = 1
    #: 1 when each replica set's last brick is an arbiter
    arbiter: int = 0
    stripe: int = 1
    transport: str = "tcp"
    bricks: list[Brick] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    #: bumped by every commit
    version: int = 1
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "lv": the bricks are LVM volume groups (storage/bd); None: absent
    device: str | None = None
    #: `volume profile` started (False once stopped); None: never started
    profile: bool | None = None
    #: geo-replication sessions by their key (absent from the document when none)
    georep: dict[str, Session] = field(default_factory=dict)
    #: the volume's internal user (glusterd's volinfo->auth.username and
    #: auth.password): glusterpyd's own clients log in to the bricks with it
    #: (volgen), which makes them trusted; None: absent (a volume made
    #: before glusterpy had them, until its next operation gives it one)
    username: str | None = None
    password: str | None = None
    #: keys this version does not know, written back as they were
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("name", "id", "status", "replica", "arbiter", "stripe", "transport", "bricks",
             "options", "version", "tasks", "device", "profile", "georep", "username",
             "password")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Volume:
        return cls(name=doc["name"], id=doc["id"], status=doc.get("status", "Created"),
                   replica=doc.get("replica", 1), arbiter=doc.get("arbiter", 0),
                   stripe=doc.get("stripe", 1), transport=doc.get("transport", "tcp"),
                   bricks=[Brick.from_json(b) for b in doc.get("bricks", [])],
                   options=dict(doc.get("options", {})), version=doc.get("version", 1),
                   tasks=copy.deepcopy(doc.get("tasks", {})), device=doc.get("device"),
                   profile=doc.get("profile"),
                   georep={k: Session.from_json(v) for k, v in doc.get("georep", {}).items()},
                   username=doc.get("username"), password=doc.get("password"),
                   extra={k: copy.deepcopy(v) for k, v in doc.items() if k not in cls._KEYS})

    def to_json(self) -> dict[str, Any]:
        """The document, keys in the order `ops.prepare_create` writes them
        (on disk they are sorted anyway)."""
        doc: dict[str, Any] = {
            "name": self.name, "id": self.id, "status": self.status,
            "replica": self.replica, "arbiter": self.arbiter, "stripe": self.stripe,
            "transport": self.transport, "bricks": [b.to_json() for b in self.bricks],
            "options": dict(self.options), "version": self.version,
            "tasks": copy.deepcopy(self.tasks)}
        if self.device is not None:
            doc["device"] = self.device
        if self.profile is not None:
            doc["profile"] = self.profile
        if self.georep:
            doc["georep"] = {k: s.to_json() for k, s in self.georep.items()}
        if self.username is not None:
            doc["username"], doc["password"] = self.username, self.password
        doc.update(copy.deepcopy(self.extra))
        return doc
