"""PostgreSQL unavailable for a while: 503s with the error shape (never a 500), /readyz says
so, and everything works again when it returns. The outage is real: the API reaches
PostgreSQL through a TCP relay of ours that drops every connection and refuses new ones."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.main import create_app
from scenecap.core.settings import Settings
from tests.conftest import serve_app


class Relay:
    """Forwards 127.0.0.1:<port> to a target; `cut()` is an outage, `restore()` ends it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # cut: the listener was closed
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        # shutdown() wakes the blocked accept(); close() alone would leave it listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.listener = self._listen(self.port)


@pytest.fixture
def relayed_api(settings: Settings, database: str) -> Iterator[tuple[str, Relay]]:
    url = make_url(database)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = settings.model_copy(
        update={"database_url": url.set(port=relay.port).render_as_string(hide_password=False)}
    )
    with serve_app(create_app(relayed)) as api:
        yield api, relay
    relay.cut()


def test_an_outage_is_a_503_with_the_error_shape_and_recovery_is_automatic(
    relayed_api: tuple[str, Relay], new_key: Callable[[], str], media_server: str
) -> None:
    api, relay = relayed_api
    headers = {"Authorization": f"Bearer {new_key()}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v2/media/categories").status_code == 200

        relay.cut()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        for method, path, body in (
            ("GET", "/v2/media/categories", None),
            ("GET", "/v2/media/categories/00000000-0000-0000-0000-000000000000", None),
            ("POST", "/v2/media/categories", {"media_url": f"{media_server}/sample.mp4"}),
        ):
            response = client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert client.get("/healthz").status_code == 200  # the process itself is fine

        relay.restore()
        assert client.get("/readyz").status_code == 200
        listed = client.get("/v2/media/categories")
        assert listed.status_code == 200 and "data" in listed.json()
