"""The service under a real uvicorn in a thread: for streams and for a real browser."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import uvicorn

from helpers import PASSWORD, service_settings, wait_for
from redis_server import free_port
from sessionhub.service.app import create_app


class Server:
    """The service under uvicorn in a thread, on a free loopback port."""

    def __init__(self, redis_url: str, **sections: Any) -> None:
        self.port = free_port()
        self.app = create_app(service_settings(redis_url, **sections))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started)
        self.base = f"http://127.0.0.1:{self.port}"

    def login(self, user: str, agent: str = "python-httpx") -> str:
        r = httpx.post(
            f"{self.base}/api/auth/login",
            json={"username": user, "password": PASSWORD},
            headers={"user-agent": agent},
        )
        return r.cookies["session"]

    def close(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=10)
