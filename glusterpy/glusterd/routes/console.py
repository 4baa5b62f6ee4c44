"""The web console: a single page served by glusterpyd at /ui/.

    GET /ui            a redirect to /ui/
    GET /ui/           the page (console/index.html)
    GET /ui/{file}     its script, style sheet and the vendored library

These routes are public - they are files, the same for everyone - and the
page does everything else through the REST API with the token the person
signs in with, so the console can do no more than that token's CLI could
(a read-only token's console hides what changes state, and the API refuses
it anyway).  The files ship inside the package (no build step, no network
at run time): console/vendor/ holds htm + Preact, prebuilt (VENDOR.md).

Every answer carries a Content-Security-Policy that allows scripts and
styles from this origin only and no framing, so a volume name or an audit
entry can never run as script even if an escaping bug let it into markup.
"""

from __future__ import annotations

from pathlib import Path

from ..http import ApiError, Response

# the files stay in glusterpy/glusterd/console/ (the package data of
# glusterpy.glusterd in pyproject.toml)
ROOT = Path(__file__).parent.parent / "console"

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml"}

HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # a new glusterpy's console must not run against an old cached script
    "cache-control": "no-cache",
}


def _shipped() -> dict[str, Path]:
    # the console's files, listed once: a URL names one of them or nothing,
    # so no name from a request ever reaches the filesystem ("..", hidden
    # files, directories, names longer than NAME_MAX all answer 404 alike)
    return {str(path.relative_to(ROOT)): path for path in sorted(ROOT.rglob("*"))
            if path.is_file() and path.suffix in TYPES
            and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)}


SHIPPED = _shipped()


def _file(rel: str) -> Response:
    path = SHIPPED.get(rel)
    if path is None:
        raise ApiError(404, f"no such resource: /ui/{rel}")
    return Response(200, raw=path.read_bytes(), content_type=TYPES[path.suffix],
                    headers=dict(HEADERS))


async def get_ui_redirect(gd, req):
    return Response(301, raw=b"", content_type="text/plain", headers={"location": "/ui/"})


async def get_ui_index(gd, req):
    return _file("index.html")


async def get_ui_file(gd, req):
    return _file(req.params["file"])


async def get_ui_vendor(gd, req):
    return _file("vendor/" + req.params["file"])


def routes(Route) -> list:
    return [
        Route("GET", "/", get_ui_redirect, "the web console is at /ui/", access="public"),
        Route("GET", "/ui", get_ui_redirect, "the web console is at /ui/", access="public"),
        Route("GET", "/ui/", get_ui_index, "the web console (a single page)", access="public"),
        Route("GET", "/ui/{file}", get_ui_file, "the web console's files", access="public"),
        Route("GET", "/ui/vendor/{file}", get_ui_vendor,
              "the web console's vendored library (htm + Preact)", access="public"),
    ]


__all__ = ["routes"]
