"""Nothing a client sends can leak what is not theirs or hold the API hostage (docs/api.md,
"Sharing" and "Limits"): share links show a public view and are bounded, streams are capped
and end, slow or huge requests are refused in time, models are allow-listed, and no input
gives a 500."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from api.services import links
from db.keys import find_active_key, hash_key
from scenecap.core.settings import Settings
from tests.api.test_categories import assert_error
from tests.api.test_live import read_events
from tests.conftest import (
    REDIS_URL,
    SCENECAP,
    app_client,
    client_for,
    is_terminal,
    poll_job,
    settings_env,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("worker")


def submit(client: httpx.Client, media_server: str, **fields: Any) -> str:
    body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 3, **fields}
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def share(client: httpx.Client, job_id: str) -> dict[str, Any]:
    link = client.post(f"/v2/media/categories/{job_id}/share", json={"expires_in": 600})
    assert link.status_code == 200, link.text
    return dict(link.json())


class TestShareLinks:
    def test_a_share_link_shows_a_public_view(
        self, api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        hook = f"{media_server}/hooks/slack-credential-T000/B000/XXXX"
        media = f"{media_server}/sample.mp4?X-Amz-Signature=secret-signature"
        job_id = submit(client, media_server, media_url=media, webhook_url=hook)
        poll_job(client, job_id, until=is_terminal)
        link = share(client, job_id)
        with httpx.Client(base_url=api_url) as anyone:
            final = read_events(anyone, link["events_url"])[-1][1]
            page = anyone.get(link["report_url"])
        assert "webhook_url" not in final and "usage" not in final
        assert final["media_url"] == f"{media_server}/sample.mp4"
        assert final["results"]["frames"], "the results are what is shared"
        assert page.status_code == 200
        assert "secret-signature" not in page.text and "slack-credential" not in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        # The owner, with the key, still sees everything.
        mine = client.get(f"/v2/media/categories/{job_id}").json()
        assert mine["webhook_url"] == hook and mine["usage"]

    def test_bad_tokens_answer_alike_whatever_the_job(
        self,
        api_url: str,
        client: httpx.Client,
        new_key: Any,
        session_factory: Any,
        media_server: str,
    ) -> None:
        job_id = submit(client, media_server, max_frames=1)
        token = share(client, job_id)["report_url"].split("token=")[1]
        tampered = token[:-2] + ("BB" if token.endswith("AA") else "AA")
        key = client.headers["authorization"].removeprefix("Bearer ")
        with session_factory() as session:
            owner = find_active_key(session, hash_key(key))
            assert owner is not None
        # A link signed the old way, with the key's stored hash (a database dump has it).
        forged, _ = links.new_token(owner.key_hash.encode(), owner.id, uuid.UUID(job_id), 600)
        unknown = uuid.uuid4()
        with httpx.Client(base_url=api_url) as anyone:
            answers = [
                anyone.get(f"/v2/media/categories/{job_id}/report", params={"token": bad})
                for bad in (tampered, forged, "ünïcödé-token", "x" * 150, "a.b")
            ]
            answers.append(
                anyone.get(f"/v2/media/categories/{unknown}/report", params={"token": token})
            )
            answers.append(
                anyone.get("/v2/media/categories/not-a-uuid/report", params={"token": token})
            )
        for answer in answers:
            assert_error(answer, 401, "UNAUTHENTICATED")
        assert len({a.json()["error"]["message"] for a in answers}) == 1

    def test_revoking_the_key_voids_its_links(
        self, api_url: str, new_key: Any, session_factory: Any, media_server: str
    ) -> None:
        key = new_key()
        with client_for(api_url, key) as client:
            job_id = submit(client, media_server, max_frames=1)
            link = share(client, job_id)
        with session_factory.begin() as session:
            from db.keys import revoke_key

            owner = find_active_key(session, hash_key(key))
            assert owner is not None
            revoke_key(session, owner.id)
        assert httpx.get(f"{api_url}{link['report_url']}").status_code == 401

    def test_share_requests_are_rate_limited_per_token(
        self, settings: Settings, new_key: Any, media_server: str
    ) -> None:
        # A Redis of its own: the suite's other share requests come from this address too.
        counts = REDIS_URL.rsplit("/", 1)[0] + "/14"
        redis.Redis.from_url(counts).flushdb()
        changes = {"share_rate_limit_per_minute": 3, "broker_url": counts}
        with app_client(settings, new_key(), **changes) as (_app, client):
            job_id = submit(client, media_server, max_frames=1)  # it waits: nobody reads db 14
            report = share(client, job_id)["report_url"]
            codes = [httpx.get(f"{client.base_url}{report}").status_code for _ in range(5)]
            other = share(client, job_id)["report_url"]  # another token, the same address
            assert httpx.get(f"{client.base_url}{other}").status_code == 429
        assert codes == [200, 200, 200, 429, 429]

    def test_access_logs_never_hold_a_token(
        self, settings: Settings, client: httpx.Client, media_server: str, tmp_path: Any
    ) -> None:
        job_id = submit(client, media_server, max_frames=1)
        report = share(client, job_id)["report_url"]
        token = report.split("token=")[1]
        with served(settings, tmp_path) as (url, log):
            assert httpx.get(f"{url}{report}").status_code == 200
            wait_for(lambda: "/report" in log.read_text(), timeout=10, what="the access log")
        written = log.read_text()
        assert token not in written and "token=[redacted]" in written


@contextmanager
def served(settings: Settings, folder: Any, **env: str) -> Iterator[tuple[str, Any]]:
    """`scenecap api` as the README and compose start it, on a free port; its log file."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = folder / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SCENECAP, "api", "--host", "127.0.0.1", "--port", str(port)],
            env={**settings_env(settings), "SCENECAP_LOG_FORMAT": "text", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30, interval=0.1, what="scenecap api")
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


class TestStreams:
    def test_streams_are_capped_per_job_and_per_key_with_one_poller(
        self, settings: Settings, new_key: Any, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.delay = 5.0  # the jobs outlast the test's streams
        changes = {"max_streams_per_job": 2, "max_streams_per_key": 3}
        with app_client(settings, new_key(), **changes) as (app, client):
            first = submit(client, media_server, max_frames=8)
            second = submit(client, media_server, max_frames=8)
            with (
                client.stream("GET", f"/v2/media/categories/{first}/events") as one,
                client.stream("GET", f"/v2/media/categories/{first}/events") as two,
            ):
                assert one.status_code == two.status_code == 200
                # Held, not dropped: a dropped line iterator closes its stream.
                lines = [one.iter_lines(), two.iter_lines()]
                assert [next(line) for line in lines] == ["retry: 1000", "retry: 1000"]
                assert_error(
                    client.get(f"/v2/media/categories/{first}/events"), 429, "TOO_MANY_STREAMS"
                )
                watchers = app.state.watchers
                assert list(watchers._watches) == [uuid.UUID(first)]  # one poller, two streams
                with client.stream("GET", f"/v2/media/categories/{second}/events") as three:
                    assert three.status_code == 200
                    lines.append(three.iter_lines())
                    next(lines[-1])
                    refused = client.get(f"/v2/media/categories/{second}/events")
                    assert_error(refused, 429, "TOO_MANY_STREAMS")
            # Closed streams give their places back.
            with client.stream("GET", f"/v2/media/categories/{second}/events") as again:
                assert again.status_code == 200

    def test_a_stream_ends_after_its_longest(
        self, settings: Settings, new_key: Any, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.delay = 2.0
        with app_client(settings, new_key(), stream_max_seconds=1.5) as (_app, client):
            job_id = submit(client, media_server, max_frames=8)
            started = time.monotonic()
            events = read_events(client, f"/v2/media/categories/{job_id}/events")
            ended_after = time.monotonic() - started
            still = client.get(f"/v2/media/categories/{job_id}").json()["status"]
        assert still in ("PENDING", "PROCESSING"), "it ended before the job did"
        assert {name for name, _data in events} <= {"progress"}
        assert ended_after < 30

    def test_a_finished_report_is_rendered_once(
        self, settings: Settings, new_key: Any, media_server: str, fake_vlm: Any
    ) -> None:
        with app_client(settings, new_key()) as (app, client):
            job_id = submit(client, media_server, max_frames=2)
            poll_job(client, job_id, until=is_terminal)
            first = client.get(f"/v2/media/categories/{job_id}/report").text
            assert (uuid.UUID(job_id), False) in app.state.reports
            second = client.get(f"/v2/media/categories/{job_id}/report").text

        # The same page, each with its own token for its pictures.
        def untokened(page: str) -> str:
            return re.sub(r"token=[\w.-]+", "token=", page)

        assert untokened(first) == untokened(second)
        assert "base64," not in first, "pictures are loaded, not inlined"


class TestSlowAndHugeRequests:
    def test_stalled_headers_are_cut_off(self, settings: Settings, tmp_path: Any) -> None:
        with served(settings, tmp_path, SCENECAP_HEADER_TIMEOUT_SECONDS="1") as (url, _log):
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
                slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end
                # Closed by the server: recv returns b"" (and raises after the socket's 10 s
                # timeout if the server kept the connection open).
                assert slow.recv(1024) == b"", "the server closes the connection"

    def test_a_stalled_body_is_refused_with_408(self, settings: Settings, new_key: Any) -> None:
        with app_client(settings, new_key(), upload_idle_seconds=1) as (_app, client):
            answer = raw_request(
                str(client.base_url),
                "POST /v2/media/categories HTTP/1.1",
                {"Authorization": client.headers["authorization"], "Content-Length": "1000"},
                b'{"media_url": ',
            )
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"REQUEST_TIMEOUT" in answer

    def test_a_stalled_upload_is_refused_and_leaves_nothing(
        self, settings: Settings, new_key: Any, tmp_path: Any
    ) -> None:
        store = tmp_path / "store"
        changes = {"upload_idle_seconds": 1, "media_store": f"file://{store}"}
        with app_client(settings, new_key(), **changes) as (_app, client):
            answer = raw_request(
                str(client.base_url),
                "POST /v2/media/uploads HTTP/1.1",
                {
                    "Authorization": client.headers["authorization"],
                    "Content-Type": "video/mp4",
                    "Content-Length": str(10 * 1024 * 1024),
                },
                b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 70_000,
            )
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert [p for p in store.rglob("*") if p.is_file()] == []

    def test_uploads_in_progress_are_capped_per_key(
        self, settings: Settings, new_key: Any, session_factory: Any
    ) -> None:
        plaintext = new_key()
        with session_factory() as session:
            key_id = find_active_key(session, hash_key(plaintext)).id  # type: ignore[union-attr]
        with app_client(settings, plaintext, max_uploads_per_key=1) as (app, client):
            headers = {
                "Authorization": client.headers["authorization"],
                "Content-Type": "video/mp4",
                "Content-Length": str(1024 * 1024),
            }
            with held_open(str(client.base_url), "POST /v2/media/uploads HTTP/1.1", headers):
                wait_for(
                    lambda: app.state.uploads.in_progress(key_id) == 1,
                    timeout=10,
                    what="the first upload to be under way",
                )
                refused = client.post(
                    "/v2/media/uploads", content=b"x" * 100, headers={"Content-Type": "video/mp4"}
                )
                assert_error(refused, 429, "TOO_MANY_UPLOADS")

    def test_json_bodies_past_max_json_bytes_are_refused(self, client: httpx.Client) -> None:
        padding = "x" * (1024 * 1024 + 10)
        refused = client.put("/v2/webhook", content=json.dumps({"url": padding}))
        assert_error(refused, 413, "REQUEST_TOO_LARGE")
        # A submission may be larger only by its data: media.
        body = {"media_url": "https://example.com/a.mp4", "job_tag": "t", "metadata": ["tags"]}
        raw = json.dumps(body)[:-1] + ', "pad": "' + padding + '"}'
        assert_error(client.post("/v2/media/categories", content=raw), 413, "REQUEST_TOO_LARGE")

    def test_a_data_uri_may_exceed_max_json_bytes(
        self, client: httpx.Client, media_dir: Any, fake_vlm: Any
    ) -> None:
        video = (media_dir / "sample.mp4").read_bytes()
        padded = video + b"\x00" * (1024 * 1024 - len(video) + 4096)  # past 1 MiB encoded
        uri = "data:video/mp4;base64," + base64.b64encode(padded).decode()
        response = client.post("/v2/media/categories", json={"media_url": uri, "max_frames": 1})
        assert response.status_code == 202, response.text

    def test_bodies_in_flight_are_capped_per_process(
        self, settings: Settings, new_key: Any
    ) -> None:
        # 900 KB held open counts 2.7 MB of the 3 MiB; 300 KB more would pass it.
        changes = {"body_bytes_in_flight": 3 * 1024 * 1024, "upload_idle_seconds": 10}
        with app_client(settings, new_key(), **changes) as (app, client):
            headers = {
                "Authorization": client.headers["authorization"],
                "Content-Type": "application/json",
                "Content-Length": str(1900 * 1024),
            }
            chunk = b'{"media_url": "data:video/mp4;base64,' + b"A" * (900 * 1024)
            with held_open(
                str(client.base_url), "POST /v2/media/categories HTTP/1.1", headers, chunk
            ):
                wait_for(
                    lambda: app.state.bodies_in_flight.held >= 3 * len(chunk),
                    timeout=10,
                    what="the held body to be read",
                )
                refused = client.post("/v2/media/categories", content=b"{" + b" " * 300_000 + b"}")
                assert_error(refused, 503, "SERVICE_UNAVAILABLE")
                assert refused.headers["retry-after"]


def raw_request(base_url: str, line: str, headers: dict[str, str], body: bytes) -> bytes:
    """Send a request's headers and part of its body, then nothing; the whole answer."""
    with held_open(base_url, line, headers, body) as connection:
        connection.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := connection.recv(65536)):
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        while len(rest) < length and (chunk := connection.recv(65536)):
            rest += chunk
        return head + b"\r\n\r\n" + rest


@contextmanager
def held_open(
    base_url: str, line: str, headers: dict[str, str], body: bytes = b"x"
) -> Iterator[socket.socket]:
    """A connection whose request stays unfinished while the block runs."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        connection.sendall(f"{line}\r\nHost: {host}\r\n{head}\r\n".encode() + body)
        yield connection


class TestModels:
    def test_only_allowed_models_reach_the_model_server(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        greedy = "o1-pro-most-expensive"
        body = {"media_url": f"{media_server}/sample.mp4", "model": greedy}
        assert_error(client.post("/v2/media/categories", json=body), 422, "MODEL_NOT_ALLOWED")
        batch = client.post("/v2/media/categories/batch", json={"requests": [body]}).json()
        assert batch["results"][0]["error"]["code"] == "MODEL_NOT_ALLOWED"
        chat = {
            "model": greedy,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": body["media_url"]}}],
                }
            ],
        }
        assert_error(client.post("/v2/media/completions", json=chat), 422, "MODEL_NOT_ALLOWED")
        allowed = submit(client, media_server, model="another-model", max_frames=1)
        assert poll_job(client, allowed, until=is_terminal)["status"] == "COMPLETED"
        assert {r.body["model"] for r in fake_vlm.requests} == {"another-model"}


class TestNoFiveHundreds:
    def test_odd_inputs_get_4xx_or_200(self, client: httpx.Client, api_url: str) -> None:
        cursor = base64.urlsafe_b64encode(b"[1.0, 1e30]").decode()
        assert_error(
            client.get("/v2/media/search", params={"q": "red", "cursor": cursor}),
            422,
            "VALIDATION_ERROR",
        )
        assert_error(client.get("/v2/media/search", params={"q": "-zzzz"}), 422, "VALIDATION_ERROR")
        far = client.get("/v2/usage", params={"from": "9999-12-31", "to": "9999-12-31"})
        assert far.status_code == 200 and far.json()["days"] == []
        # Text PostgreSQL cannot hold: a NUL, a lone surrogate (found by the fuzzer in ask).
        for odd in ("who\x00?", "\udb78 who?"):
            asked = client.post(
                f"/v2/media/categories/{uuid.uuid4()}/ask",
                content=json.dumps({"question": odd}),
                headers={"Content-Type": "application/json"},
            )
            assert_error(asked, 422, "VALIDATION_ERROR")
        nul = client.get("/v2/media/search", params={"q": "kettle\x00"})
        assert_error(nul, 422, "VALIDATION_ERROR")
        tagged = client.post(
            "/v2/media/categories",
            json={"media_url": "https://example.com/a.mp4", "job_tag": "a\x00b"},
        )
        assert_error(tagged, 422, "VALIDATION_ERROR")
        job = f"{api_url}/v2/media/categories/{uuid.uuid4()}/events"
        assert httpx.get(job, params={"token": "ü.ü"}).status_code == 401
        raw = {b"Authorization": "Bearer ü".encode()}  # not ASCII: no str header can carry it
        assert httpx.get(job, headers=raw).status_code == 401


def test_configuration_errors_name_the_setting_never_its_value(tmp_path: Any) -> None:
    secret = "short-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    run = subprocess.run(
        [SCENECAP, "migrate"],
        env={**env, "SCENECAP_METRICS_TOKEN": secret, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("scenecap: error: CONFIG: SCENECAP_METRICS_TOKEN:")
    assert len(run.stderr.strip().splitlines()) == 1 and secret not in run.stderr
    assert "Traceback" not in run.stderr


def test_production_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValueError, match="SCENECAP_SECRET_KEY"):
        Settings(
            environment="production",
            database_url="postgresql+psycopg://x@db/x",
            broker_url="redis://redis:6379/0",
        )
