"""Signed, at-least-once webhooks (docs/api.md, "Webhooks"), received by a real server on
127.0.0.1 and verified with the reference `standardwebhooks` library."""

from __future__ import annotations

import contextlib
import http.server
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from db import jobs as job_repo
from db.keys import create_key
from db.session import Message, make_session_factory
from db.webhooks import events_for_job
from scenecap.core.signing import signature_header
from scenecap.core.tasks import DELIVER_WEBHOOK
from tests.api.test_categories import assert_error
from tests.conftest import client_for, is_terminal, poll_job, serve_http, wait_for
from worker.maintenance.webhooks import deliver_event

pytestmark = pytest.mark.usefixtures("worker")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # path -> statuses to answer in turn (the last one repeats)
    script: dict[str, list[int]] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            state.received.append(Received(self.path, dict(self.headers), body, time.time()))
            kind = self.path.split("/")[1]
            if kind == "hang":
                time.sleep(4)  # simulated hang past the sender's deadline (WEBHOOK_TIMEOUT_SECONDS)
            if kind == "redirect":
                self._answer(302, {"Location": "/ok/redirected"})
                return
            statuses = state.script.get(self.path, [{"gone": 410}.get(kind, 200)])
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            self._answer(status, {"Retry-After": "7"} if status in (429, 503) else {})

        def _answer(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "2"}.items():
                self.send_header(name, value)
            self.end_headers()
            # A hanging receiver answers after the sender gave up; nobody is listening then.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(b"ok")

    with serve_http(Handler) as url:
        state.url = url
        yield state


@pytest.fixture
def account(session_factory: Any, api_url: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client and its key's webhook secret."""
    with session_factory.begin() as session:
        key, plaintext = create_key(session, "webhooks")
        secret = key.webhook_secret
    with client_for(api_url, plaintext) as client:
        yield client, secret


def hook(receiver: Receiver, kind: str) -> tuple[str, str]:
    path = f"/{kind}/{uuid.uuid4().hex}"
    return f"{receiver.url}{path}", path


def submit(client: httpx.Client, media_server: str, webhook_url: str | None, **body: Any) -> str:
    body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 1, **body}
    if webhook_url:
        body["webhook_url"] = webhook_url
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def deliveries(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v2/media/categories/{job_id}/webhooks")
    assert response.status_code == 200
    return list(response.json()["data"])


def settled(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Wait until the job's webhook is delivered or has failed for good."""
    return wait_for(
        lambda: (d := deliveries(client, job_id)) and d[0]["status"] != "pending" and d,
        timeout=30,
        what="the webhook to settle",
    )


class TestSignedEvents:
    @pytest.mark.parametrize(
        ("media", "event"), [("sample.mp4", "media.completed"), ("truncated.mp4", "media.failed")]
    )
    def test_terminal_job_sends_one_event_the_reference_library_verifies(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
        media: str,
        event: str,
    ) -> None:
        client, secret = account
        url, path = hook(receiver, "ok")
        job_id = submit(
            client, media_server, url, media_url=f"{media_server}/{media}", job_tag="t-1"
        )
        poll_job(client, job_id, until=is_terminal)
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the webhook")
        payload = Webhook(secret).verify(got.body, got.headers)
        assert payload["type"] == event
        data = payload["data"]
        assert data["job_id"] == job_id and data["job_tag"] == "t-1"
        if event == "media.completed":
            assert data["status"] == "COMPLETED" and data["percent_complete"] == 100
            assert len(data["results"]["frames"]) == 1 and data["error"] is None
        else:
            assert data["results"] is None and data["error"]["code"] == "MEDIA_UNREADABLE"
        assert got.headers["webhook-id"].startswith("msg_")
        assert [d["status"] for d in settled(client, job_id)] == ["delivered"]

    def test_cancelled_job_sends_media_cancelled(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, secret = account
        fake_vlm.delay = 1.0
        url, path = hook(receiver, "ok")
        job_id = submit(client, media_server, url, max_frames=10)
        assert client.delete(f"/v2/media/categories/{job_id}").status_code == 200
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the webhook")
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "media.cancelled"

    def test_receivers_reject_tampering_stale_timestamps_and_wrong_secrets(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, secret = account
        url, path = hook(receiver, "ok")
        submit(client, media_server, url)
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the webhook")
        Webhook(secret).verify(got.body, got.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(got.body.replace(b"COMPLETED", b"FAILED"), got.headers)
        stale = int(time.time()) - 3600
        old = {
            **got.headers,
            "webhook-timestamp": str(stale),
            "webhook-signature": signature_header(
                [secret], got.headers["webhook-id"], stale, got.body.decode()
            ),
        }
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(got.body, old)
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 32).verify(got.body, got.headers)


class TestRetries:
    def test_500_500_200_is_three_attempts_with_one_webhook_id(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, secret = account
        url, path = hook(receiver, "flaky")
        receiver.script[path] = [500, 500, 200]
        job_id = submit(client, media_server, url)
        got = wait_for(
            lambda: len(receiver.at(path)) >= 3 and receiver.at(path),
            timeout=30,
            what="three attempts",
        )
        assert len({r.headers["webhook-id"] for r in got}) == 1
        assert len({r.headers["webhook-timestamp"] for r in got}) == 3
        for attempt in got:
            Webhook(secret).verify(attempt.body, attempt.headers)
        [event] = settled(client, job_id)
        assert event["status"] == "delivered" and event["attempts"] == 3
        assert [a["status_code"] for a in event["attempt_log"]] == [500, 500, 200]

    def test_retry_after_is_honoured_over_the_schedule(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, path = hook(receiver, "busy")
        receiver.script[path] = [503, 200]
        job_id = submit(client, media_server, url)
        event = wait_for(
            lambda: (d := deliveries(client, job_id)) and d[0]["attempt_log"] and d[0],
            timeout=30,
            what="a first attempt",
        )
        assert event["status"] == "pending"
        first = datetime.fromisoformat(event["attempt_log"][0]["attempted_at"])
        wait = (datetime.fromisoformat(event["next_attempt_at"]) - first).total_seconds()
        assert 6 <= wait <= 8, "Retry-After: 7 wins over the schedule's 1.1 s"

    def test_delivery_checks_the_url_policy_again(
        self, session_factory: Any, settings: Any, receiver: Receiver, media_server: str
    ) -> None:
        """The name may resolve elsewhere by delivery time: every attempt is checked."""
        url, path = hook(receiver, "ok")
        with session_factory.begin() as session:
            key, _plaintext = create_key(session, "policy")
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url="x",
                media_type="video",
                requested_metadata=["tags"],
                webhook_url=url,
                status="PENDING",
            )
            job_repo.cancel_job(session, job.id)
            [(event, _none)] = events_for_job(session, job.id)
        strict = settings.model_copy(update={"allow_private_urls": False})
        queued: list[Message] = []
        capturing = make_session_factory(session_factory.kw["bind"], queued.append)
        deliver_event(event.id, capturing, strict)
        with session_factory() as session:
            [(event, attempts)] = events_for_job(session, job.id)
        assert attempts[0].error.startswith("URL_NOT_ALLOWED") and attempts[0].status_code is None
        assert event.status == "pending"
        assert [(m.task, m.args) for m in queued] == [(DELIVER_WEBHOOK, (str(event.id),))]
        assert not receiver.at(path)

    def test_redirects_are_failures_not_followed(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, _path = hook(receiver, "redirect")
        job_id = submit(client, media_server, url)
        [event] = settled(client, job_id)
        assert event["status"] == "failed" and event["attempts"] == 3
        assert all(a["status_code"] == 302 for a in event["attempt_log"])
        assert "not followed" in event["last_error"]
        assert not receiver.at("/ok/redirected")

    def test_a_receiver_that_hangs_is_cut_off_at_the_deadline(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, _path = hook(receiver, "hang")
        job_id = submit(client, media_server, url)
        event = wait_for(
            lambda: (d := deliveries(client, job_id)) and d[0]["attempt_log"] and d[0],
            timeout=30,
            what="a first attempt",
        )
        first = event["attempt_log"][0]
        assert first["status_code"] is None and "MEDIA_UNREACHABLE" in first["error"]
        assert first["duration_ms"] < 3500, (
            "cut off at WEBHOOK_TIMEOUT_SECONDS, not the receiver's 4 s"
        )

    def test_410_stops_the_retries(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, path = hook(receiver, "gone")
        job_id = submit(client, media_server, url)
        [event] = settled(client, job_id)
        assert event["status"] == "failed" and event["attempts"] == 1
        assert len(receiver.at(path)) == 1


class TestOutbox:
    def test_an_event_committed_without_a_queue_message_is_swept_and_delivered(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        """As if the worker died between the commit and the enqueue."""
        client, secret = account
        url, path = hook(receiver, "ok")
        job_id = submit(client, media_server, None)
        poll_job(client, job_id, until=is_terminal)
        with session_factory.begin() as session:  # a finished job, its outbox row, no message
            owner = job_repo.get_job(session, uuid.UUID(job_id))
            assert owner is not None
            lost = job_repo.create_job(
                session,
                api_key_id=owner.api_key_id,
                media_url="x",
                media_type="video",
                requested_metadata=["tags"],
                webhook_url=url,
                status="PROCESSING",
            )
            assert job_repo.complete_job(session, lost.id, results={"frames": []}, usage={})
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the sweep")
        assert Webhook(secret).verify(got.body, got.headers)["data"]["status"] == "COMPLETED"

    def test_redeliver_sends_the_same_webhook_id_again(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, path = hook(receiver, "ok")
        job_id = submit(client, media_server, url)
        settled(client, job_id)
        response = client.post(f"/v2/media/categories/{job_id}/webhooks/redeliver")
        assert response.status_code == 202
        got = wait_for(
            lambda: len(receiver.at(path)) >= 2 and receiver.at(path),
            timeout=30,
            what="the redelivery",
        )
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]

    def test_another_key_cannot_see_or_redeliver(
        self,
        account: tuple[httpx.Client, str],
        other_client: httpx.Client,
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        job_id = submit(client, media_server, hook(receiver, "ok")[0])
        settled(client, job_id)
        assert_error(
            other_client.get(f"/v2/media/categories/{job_id}/webhooks"), 404, "JOB_NOT_FOUND"
        )
        assert_error(
            other_client.post(f"/v2/media/categories/{job_id}/webhooks/redeliver"),
            404,
            "JOB_NOT_FOUND",
        )

    def test_redeliver_without_a_webhook_is_409(
        self, account: tuple[httpx.Client, str], media_server: str, fake_vlm: Any
    ) -> None:
        client, _secret = account
        job_id = submit(client, media_server, None)
        poll_job(client, job_id, until=is_terminal)
        assert_error(
            client.post(f"/v2/media/categories/{job_id}/webhooks/redeliver"),
            409,
            "NO_WEBHOOK_EVENT",
        )


class TestKeySettings:
    def test_default_webhook_url_is_used_when_a_job_names_none(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, _secret = account
        url, path = hook(receiver, "ok")
        assert client.put("/v2/webhook", json={"url": url}).json()["url"] == url
        job_id = submit(client, media_server, None)
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the webhook")
        assert json.loads(got.body)["data"]["job_id"] == job_id
        assert client.put("/v2/webhook", json={"url": None}).json()["url"] is None

    def test_default_webhook_url_obeys_the_url_policy(
        self, account: tuple[httpx.Client, str]
    ) -> None:
        client, _secret = account
        assert_error(
            client.put("/v2/webhook", json={"url": "ftp://x/y"}), 422, "UNSUPPORTED_URL_SCHEME"
        )

    def test_rotated_secret_and_the_old_one_both_verify_during_the_grace_period(
        self,
        account: tuple[httpx.Client, str],
        receiver: Receiver,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        client, old = account
        new = client.post("/v2/webhook/rotate-secret").json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old
        url, path = hook(receiver, "ok")
        submit(client, media_server, url)
        [got] = wait_for(lambda: receiver.at(path), timeout=30, what="the webhook")
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(got.body, got.headers)
        Webhook(old).verify(got.body, got.headers)
