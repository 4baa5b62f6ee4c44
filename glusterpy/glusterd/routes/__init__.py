"""glusterpyd's REST API (JSON over HTTP/1.1), described by OpenAPI 3.

The CLI is a client of this API and nothing else; peers use it to run the
cluster's transactions; GET /api/v1/openapi.json describes every route (the
document is built from the ROUTES table below, so it cannot drift from what
is served).

Public routes (what `glusterpy` uses):

    GET    /api/v1/node                         this node's uuid, names, port
    GET    /api/v1/peers                        peer status
    POST   /api/v1/peers {host, port?}          peer probe
    DELETE /api/v1/peers/{host}?force=1         peer detach
    GET    /api/v1/pool                         pool list (peers and this node)
    GET    /api/v1/volumes                      volume info of all volumes
    POST   /api/v1/volumes {name, bricks, replica?, arbiter?, stripe?, transport?, device?,
                        force?}
    GET    /api/v1/volumes/{name}               volume info
    DELETE /api/v1/volumes/{name}               volume delete
    POST   /api/v1/volumes/{name}/start {force?}    .../stop {force?}
    GET    /api/v1/volumes/{name}/status        bricks: port, pid, online, on every node
    GET    /api/v1/status                       the same for every volume
    GET    /api/v1/volumes/{name}/status/clients    volume status NAME clients: per brick,
                                                the clients' address, bytes, op-version
                                                (glusterd/clients.py, routes/clients.py)
    POST   /api/v1/volumes/{name}/bricks {bricks, replica?, force?}        add-brick
    POST   /api/v1/volumes/{name}/remove-brick {bricks, action}   start|status|stop|commit|force
    GET    /api/v1/volumes/{name}/options?key=K volume get (K or all)
    POST   /api/v1/volumes/{name}/options {options: {KEY: VALUE}}  volume set
    DELETE /api/v1/volumes/{name}/options/{key} volume reset (key or "all")
    GET    /api/v1/options                      volume set help
    POST   /api/v1/volumes/{name}/profile {action: start|stop}
    GET    /api/v1/volumes/{name}/profile       profile info (per brick, per fop)
    GET    /api/v1/log?volume=V&limit=N         the audit log
    GET    /api/v1/search?q=QUERY               volume search (glusterpy/search.py's grammar)
    GET    /api/v1/search/complete?q=TEXT       what may come next in a query (auto-complete)
    GET    /api/v1/whoami                       the caller as this node sees it, with its role
    GET    /ui/...                              the web console (routes/console.py): public
                                                files; everything it shows or does is a
                                                call above with the signed-in token
    POST   /api/v1/volumes/{name}/rebalance {action: start|fix-layout|stop, force?}
    GET    /api/v1/volumes/{name}/rebalance     rebalance status: per node, and in all
    GET    /api/v1/volumes/{name}/remove-brick  remove-brick status: the same
                                                (routes/rebalance.py)
    POST   /api/v1/volumes/{name}/heal {op: index|full}          volume heal [full]
    GET    /api/v1/volumes/{name}/heal/info     heal info: per brick, entries needing heal
    GET    /api/v1/volumes/{name}/heal/split-brain               heal info split-brain
    GET    /api/v1/volumes/{name}/heal/statistics                heal statistics (crawls)
    GET    /api/v1/volumes/{name}/heal/statistics/heal-count     statistics heal-count
    GET    /api/v1/volumes/{name}/heal/task     the heal as a task: per brick pending,
                                                healed, progress, rate, time left
                                                (glusterd/heal_task.py)
    POST   /api/v1/volumes/{name}/heal/split-brain {policy, file?, brick?}
                                                heal split-brain bigger-file|latest-mtime|
                                                source-brick (glusterd/heal.py, routes/heal.py)

    POST   /api/v1/volumes/{name}/geo-replication {secondary, action, force?, ...}
                                        volume geo-replication NAME HOST::VOL create|start|
                                        stop|pause|resume|delete|config (routes/georep.py)
    GET    /api/v1/volumes/{name}/geo-replication?secondary=S   its status rows, sessions
    GET    /api/v1/geo-replication              every session's status

    GET|POST /api/v1/tokens, DELETE /api/v1/tokens/{name}   token list|create|revoke
    POST   /api/v1/tls/setup {management?}, /api/v1/tls/clients {name}
                                                tls setup | tls client (glusterd/tls_setup.py, routes/tls_setup.py)

Who may call what is `authorize` in routes/api.py (glusterd/trust.py says how each
caller proves itself): root on the unix socket, an admin token, or -
reading only - a read-only token; tokens and tls are for root on the node.
Only this document and the console's static files are public.

Peer routes (/api/v1/cluster/..., /api/v1/local/...) carry the transaction
phases and node-local reads; only a member, proved by its pinned
certificate over TLS, may call them (join: a node in no pool accepts one).

Errors are `{"error": message}` with 400 (refused), 401 (no or a bad
token), 403 (not allowed to this caller), 404 (no such route or volume),
405 (method), 409 (the cluster lock is held), 413 (body too big) or 502 (a
peer did not answer).  Every state-changing call and every refusal is
written to the audit log with who asked as the connection proved it (root's
uid, a token's name, a peer's uuid), the client's address, and the user
name the CLI claims.

The package holds every module of glusterpyd that speaks HTTP; what they
call are the services beside it (glusterd/daemon.py, ops.py, heal.py,
rebalance.py, clients.py, profile.py, tls_setup.py, ...), which never
import a route module.  The daemon wires the routes in at one place
(`Glusterd.serve` calls `make_app`); tests/test_glusterd_layout.py checks
both rules and that no import cycle runs through glusterd.

    api.py          the ROUTES table, `make_app`, `openapi`, and who may
                    call what (`ACCESS`, `principal`, `authorize`); the
                    handlers of peers, volumes, options, tokens and the
                    peer-to-peer transaction phases
    handlers.py     what every route module shares: who asked, the volume
                    a route names or 404, an operation run as a transaction
    heal.py         volume heal's routes (glusterd/heal.py does the work)
    rebalance.py    rebalance and remove-brick status routes
    clients.py      volume status NAME clients
    georep.py       volume geo-replication's routes (glusterd/georep.py)
    profile.py      volume profile start|stop|info
    tls_setup.py    tls setup | tls client
    console.py      the web console's files at /ui/
"""

from __future__ import annotations

from .api import ACCESS, ROUTES, Route, authorize, make_app, openapi, principal

__all__ = ["ACCESS", "ROUTES", "Route", "authorize", "make_app", "openapi", "principal"]
