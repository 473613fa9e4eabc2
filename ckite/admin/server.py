"""The admin HTTP server of one member: a Flask app served by waitress on its own thread, with
separate worker threads for the routes that only look (``ckite.admin.dispatch``).

waitress, not Flask's development server: it is threaded, keeps connections alive and is
meant for production (about twice the requests per second here). The server is built in
:meth:`AdminServer.start` rather than in the constructor, so the application can add its
blueprint to :attr:`AdminServer.app` first, and tests can use ``app.test_client()``
without opening a socket.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from waitress import create_server, wasyncore
from waitress.trigger import trigger as WaitressTrigger

from ckite.admin.auth import install_access_control
from ckite.admin.cluster import ClusterStatusFetcher, admin_url_by_convention
from ckite.admin.dispatch import RoutingDispatcher
from ckite.admin.errors import install_error_handlers
from ckite.admin.routes import admin_blueprint
from ckite.admin.status_view import render_status

if TYPE_CHECKING:
    from ckite.api import CKite

logger = logging.getLogger(__name__)

#: waitress worker threads for the routes that may wait on consensus (writes, reads, membership
#: changes); /status, /metrics and the console have threads of their own (ckite.admin.dispatch).
DEFAULT_THREADS = 4

#: How long stop() lets requests in progress finish (a write may wait for its timeout).
STOP_TIMEOUT = 5.0

#: The largest request body waitress accepts (413 beyond). waitress buffers a whole body before any
#: route (or the token check) sees it; its own default is 1 GB, from anyone who reaches the port.
DEFAULT_MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024


class _ReadableJSON(DefaultJSONProvider):
    """Flask's JSON, in CKite's key order (cluster, then log) and indented: people read /status with curl."""

    sort_keys = False
    compact = False


class AdminServer:
    """Serves ``/status``, ``/cluster/status``, ``/metrics``, membership routes and the console.

    Add application routes with ``server.app.register_blueprint(...)`` before :meth:`start`
    (a GET route that changes state is marked with :func:`ckite.admin.mutating`). With a
    ``token``, the routes that change state require it (:mod:`ckite.admin.auth`).
    """

    def __init__(self, ckite: CKite, host: str = "localhost", port: int = 0, *,
                 peer_admin_url: Callable[[str], str] = admin_url_by_convention,
                 threads: int = DEFAULT_THREADS, token: str | None = None) -> None:
        self.ckite = ckite
        self.host = host
        self.port = port
        self._threads = threads
        self._tag = ckite.id.rsplit(":", 1)[-1]
        self.fetcher = ClusterStatusFetcher(ckite.id, lambda: ckite.members,
                                            lambda: render_status(ckite.status().to_json()),
                                            admin_url_of=peer_admin_url)
        self.app = Flask("ckite.admin", static_folder=None)
        self.app.json = _ReadableJSON(self.app)
        install_error_handlers(self.app, lambda: ckite.leader, peer_admin_url)
        install_access_control(self.app, token)
        self.app.register_blueprint(admin_blueprint(ckite, self.fetcher,
                                                    token_required=token is not None))
        #: Raise it before start() if the application's routes take larger bodies.
        self.max_request_body_bytes = DEFAULT_MAX_REQUEST_BODY_BYTES
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL of the running server (the real port when 0 was asked for)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind the socket (raises OSError if the port is taken) and serve on ``ckite-<port>-admin``."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("admin server already started")
            listener = _listen(self.host, self.port)   # bind first: a taken port fails before any thread starts
            try:
                self._server = create_server(self.app, map=self._map, sockets=[listener], threads=self._threads,
                                             ident="ckite", expose_tracebacks=False,
                                             max_request_body_size=self.max_request_body_bytes,
                                             _dispatcher=RoutingDispatcher(self._tag, self._threads))
            except BaseException:
                wasyncore.close_all(self._map)
                listener.close()
                raise
            self.port = listener.getsockname()[1]
            self._thread = threading.Thread(target=self._serve, name=f"ckite-{self._tag}-admin", daemon=True)
            self._thread.start()
        logger.info("%s: admin console on %s", self.ckite.id, self.url)

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:   # the loop must not die unnoticed, unless stop() closed its sockets under it
            if self._map:
                logger.exception("%s: admin server loop failed", self.ckite.id)
            else:
                logger.debug("%s: admin server loop ended on sockets closed by stop()", self.ckite.id, exc_info=True)

    def stop(self) -> None:
        """Finish requests in progress, close every socket, join the thread; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._thread = None
        if server is not None and thread is not None:
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_TIMEOUT)
            self._close_sockets(thread)
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                logger.warning("%s: admin thread did not stop within %.1fs", self.ckite.id, STOP_TIMEOUT)
        self.fetcher.close()

    def _close_sockets(self, thread: threading.Thread) -> None:
        """Close every socket from the loop's own thread (closing under a running select() is a race);
        the loop ends when its socket map is empty."""
        triggers = [channel for channel in list(self._map.values()) if isinstance(channel, WaitressTrigger)]
        if triggers and thread.is_alive():
            trigger = triggers[0]
            try:
                trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
                return
            except OSError as error:   # seen once in CI (EBADF): something closed the pipe's descriptor
                logger.error("%s: cannot wake the admin loop through its pipe (fd %s, closed by waitress: %s): "
                             "%s; closing its sockets from stop()", self.ckite.id, trigger.trigger,
                             trigger._closed, error)   # noqa: SLF001 - the diagnosis needs it
        wasyncore.close_all(self._map)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on the first address ``host`` resolves to (one socket, so port 0
    means one port, not one per address family); raises OSError when the port is taken."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address[:2], family=family)


def build_admin(ckite: CKite, host: str, port: int,
                peer_admin_url: Callable[[str], str] = admin_url_by_convention, *,
                token: str | None = None) -> AdminServer:
    """The admin server the builder attaches to a member (not started: CKite.start starts it)."""
    return AdminServer(ckite, host, port, peer_admin_url=peer_admin_url, token=token)
