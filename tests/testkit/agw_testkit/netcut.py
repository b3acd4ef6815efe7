"""A TCP proxy a test can cut and restore: the database "goes away" for one
gateway only (the shared PostgreSQL server keeps serving everyone else).

`cut()` resets every proxied connection (RST, as a crashed server or a
failover leaves them) and closes the listening socket, so new connections are
refused; `restore()` listens again on the same port.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import List, Optional, Tuple

from .procs import free_port


class CuttableProxy:
    def __init__(self, target: Tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: List[socket.socket] = []
        self._listener: Optional[socket.socket] = None
        self.accepted = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "CuttableProxy":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(256)
        with self._lock:
            self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True, name="netcut-accept").start()
        return self

    def cut(self) -> int:
        """Refuse new connections and reset the open ones; returns how many were reset."""
        with self._lock:
            ls, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if ls is not None:
            ls.close()
        for s in conns:
            try:
                # SO_LINGER 0: close() sends RST instead of FIN.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        return len(conns) // 2

    def restore(self) -> None:
        """Listen again (a no-op while it listens)."""
        with self._lock:
            if self._listener is not None:
                return
        self.start()

    def close(self) -> None:
        self.cut()

    # -- plumbing ----------------------------------------------------------------
    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not ls:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True, name="netcut-pump").start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
