"""The framework floor: the service's stack (Starlette + uvicorn, same JSON envelope, same cookie
parsing) serving an endpoint that touches no session at all.

    python bench/plain_app.py --port 8001 --workers 2
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def plain(request: Request) -> Response:
    request.cookies.get("session")  # parse the cookie like the real endpoint does
    return JSONResponse({"success": True, "data": {"user_id": "alice"}})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/api/plain", plain, methods=["GET", "POST"]),
            Route("/healthz", plain, methods=["GET"]),
        ]
    )


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Exactly how ``sessionhub serve`` runs: an app object for 1 worker, a factory string for more.
    if args.workers == 1:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    else:
        uvicorn.run(
            "plain_app:create_app",
            factory=True,
            host="127.0.0.1",
            port=args.port,
            workers=args.workers,
            log_level="warning",
        )


if __name__ == "__main__":
    main()
