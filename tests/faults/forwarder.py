"""A Unix-socket forwarder to the Docker engine that a test controls: it passes traffic, drops
every connection as soon as a request arrives (an engine that hangs up mid-call), or refuses
to connect at all (an engine that is down)."""
from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from pathlib import Path

PASS, DROP, DOWN = "pass", "drop", "down"


class DockerForwarder:
    def __init__(self, path: Path, target: str = "/var/run/docker.sock"):
        self.path, self.target = Path(path), target
        self.mode = PASS
        self.dropped = 0
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = False

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> DockerForwarder:
        self._listen()
        return self

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def set(self, mode: str) -> None:
        """PASS, DROP (hang up on every request, live connections cut now) or DOWN (nothing listens)."""
        self.mode = mode
        if mode != PASS:
            self._cut_live()
        if mode == DOWN and self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        elif mode != DOWN and self._listener is None:
            self._listen()

    def stop(self) -> None:
        self._closing = True
        self.set(DOWN)

    def _cut_live(self) -> None:
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: DOWN or stopped
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == DROP:
            with contextlib.suppress(OSError):
                client.recv(65536)  # the request arrives; the "engine" hangs up without answering
            self.dropped += 1
            client.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._live.update((client, upstream))
        try:
            pair = {client: upstream, upstream: client}
            while True:
                readable, _, _ = select.select(list(pair), [], [], 1.0)
                if self.mode != PASS and not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._live.discard(client)
                self._live.discard(upstream)
