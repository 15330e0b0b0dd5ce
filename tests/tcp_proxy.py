"""A loopback TCP proxy for tests: puts a slow or stalled network between a client and Redis."""

from __future__ import annotations

import socket
import threading
import time

HOST = "127.0.0.1"
CHUNK = 65536


class TcpProxy:
    """Forwards every connection made to :attr:`port` to ``target_port``.

    ``delay`` seconds are added before each chunk is forwarded, either way; :meth:`stall` holds
    every chunk until :meth:`resume`, as a network that drops everything and then heals.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """A partition: every open connection is reset and new ones stall until :meth:`resume`,
        so nothing sent meanwhile (a Pub/Sub message included) arrives late."""
        self.stall()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
                upstream = socket.create_connection((HOST, self.target_port))
            except OSError:
                return  # closed
            with self._lock:
                self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                self._flowing.wait()
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:  # one side closed: close the other, as a real connection would
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.resume()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
