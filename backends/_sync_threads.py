"""The blocking server's threads: one per connection, each kept for the next.

socketserver's ThreadingMixIn starts a thread for every connection and lets
it end with it. Starting one costs more than a short session does once
other connection threads are handing the GIL over: where every message
comes over a new connection, a thread started for each made the server
about a fifth slower than threads that wait for the next connection. So a
thread whose connection ended waits ``idle_timeout`` seconds for another
before it ends; a connection that finds no thread waiting gets a new one,
so there are never fewer threads than open connections, as before.
"""

from __future__ import annotations

import queue
import socketserver
import threading
from typing import Any

__all__ = ["ReusedThreads"]

_Job = tuple[Any, Any]  # (request, client_address), as socketserver passes them


class ReusedThreads(socketserver.ThreadingMixIn):
    """A socketserver mix-in: a thread of its own for each connection, as
    with ThreadingMixIn, taken from those that wait when there are any."""

    idle_timeout = 30.0
    """Seconds a thread whose connection ended waits for the next one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # threads waiting for a connection, none handed to them yet
        self._closed = False
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._waiting:
                self._waiting -= 1
                self._jobs.put((request, client_address))
                return
        thread = threading.Thread(target=self._serve, args=((request, client_address),))
        thread.daemon = True
        thread.start()

    def _serve(self, job: _Job | None) -> None:
        while job is not None:
            self.process_request_thread(*job)  # handles, then closes the connection
            with self._lock:
                if self._closed:
                    return
                self._waiting += 1
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    try:  # handed one just as the wait ended
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._waiting -= 1
                        return

    def server_close(self) -> None:
        super().server_close()
        with self._lock:  # the waiting threads end; the busy ones once done
            self._closed = True
            for _ in range(self._waiting):
                self._jobs.put(None)
            self._waiting = 0
