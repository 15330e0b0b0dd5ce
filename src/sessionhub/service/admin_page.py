"""The admin page (``/admin``) and the interactive API docs (``/docs``), every asset served here.

Nothing is fetched from a CDN and nothing is built: the admin page is plain HTML, CSS and
JavaScript shipped in ``static/``, and the docs are Swagger UI from the ``swagger-ui-bundle-v2``
package (Swagger UI 5, which reads OpenAPI 3.1). Both work on a machine with no network.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(str(resources.files("sessionhub.service").joinpath("static")))

# The pages load scripts and styles from this origin only, and no other site may frame them
# (clickjacking the revoke buttons). Swagger UI sets inline styles and data: images itself.
_ADMIN_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def swagger_ui_dir() -> Path:
    """Where the installed Swagger UI bundle keeps its files."""
    vendor = Path(str(resources.files("swagger_ui_bundle").joinpath("vendor")))
    return max(vendor.glob("swagger-ui-*"))


def _page(name: str, policy: str) -> Response:
    response = FileResponse(STATIC / name, media_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = policy
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def admin(request: Request) -> Response:
    return _page("admin.html", _ADMIN_POLICY)


async def docs(request: Request) -> Response:
    return _page("docs.html", _DOCS_POLICY)


def routes() -> list[BaseRoute]:
    """The pages and their static files (the mounts are not API operations: no OpenAPI entry)."""
    return [
        Route("/admin", admin, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/admin/static", StaticFiles(directory=STATIC), name="admin_static"),
        Mount("/docs/static", StaticFiles(directory=swagger_ui_dir()), name="docs_static"),
    ]
