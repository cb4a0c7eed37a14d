"""A stand-in for a vision-language model: a real OpenAI chat-completions server on 127.0.0.1.

It validates every request strictly (messages, parts, decodable JPEGs, max_tokens), answers
deterministically from the images' dominant colours, and can be told to be slow, to fail, to
answer malformed JSON or to refuse `response_format`. Like vLLM it can refuse requests over
its context length (counting image tokens by Qwen2-VL's rule) or with more images than it
takes, in vLLM's own words.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from scenecap.cli.sample import PALETTE


def dominant_colour(jpeg: bytes) -> str:
    """The palette colour closest to the image's median pixel (the sample's background)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    assert image is not None, "the fake model was sent an image that does not decode"
    median = np.median(image.reshape(-1, 3), axis=0)
    return min(PALETTE, key=lambda name: float(np.linalg.norm(np.array(PALETTE[name]) - median)))


def answer_for(colour: str) -> dict[str, Any]:
    return {
        "caption": f"A {colour} background with a small dark square sliding across it.",
        "categories": ["test pattern"],
        "participants": ["dark square"],
        "actions": ["sliding"],
        "scene": f"{colour} backdrop",
        "tags": [colour, "squares"],
    }


def segment_answer(colours: list[str]) -> dict[str, Any]:
    """One answer for several frames: the most common colour sets the scene."""
    colour = Counter(colours).most_common(1)[0][0]
    answer = answer_for(colour)
    answer["caption"] = f"Frames in order: {', '.join(colours)}. " + answer["caption"]
    answer["tags"] = [*dict.fromkeys(colours), "squares"]
    return answer


_SEGMENT_LINE = re.compile(r"^\[(\d+)\] [\d.]+-[\d.]+ s: (.*)$")


def chapters_answer(text: str) -> dict[str, Any]:
    """Chapters of consecutive segments whose captions name the same colour first."""
    chapters: list[dict[str, Any]] = []
    for line in text.splitlines():
        found = _SEGMENT_LINE.match(line)
        if not found:
            continue
        index, caption = int(found.group(1)), found.group(2)
        colour = next((c for c in PALETTE if c in caption), "unknown")
        if chapters and chapters[-1]["colour"] == colour:
            chapters[-1]["last"] = index
        else:
            chapters.append({"first": index, "last": index, "colour": colour})
    return {
        "chapters": [
            {
                "first": c["first"],
                "last": c["last"],
                "title": f"The {c['colour']} part",
                "summary": f"A {c['colour']} background with a sliding square.",
            }
            for c in chapters
        ]
    }


def ask_answer(text: str) -> str:
    """Cite the first note that names a word of the question, and one time no note has (the
    service must drop it)."""
    notes, question = text.split("Question: ", 1)
    words = {w.lower() for w in re.findall(r"\w{3,}", question.splitlines()[0])}
    for line in notes.splitlines():
        found = re.match(r"(\[\d+\.\d-\d+\.\d\]) \(([^)]*)\) (.*)", line)
        if found and words & {w.lower() for w in re.findall(r"\w{3,}", found.group(3))}:
            return f"It is {found.group(2)} at {found.group(1)}, and again at [9999.0-9999.5]."
    return "The video does not show it."


def prompt_tokens_of(body: dict[str, Any], images: list[bytes]) -> int:
    """What a Qwen2-VL server counts: ceil(h/28) * ceil(w/28) per image, about four characters
    of text per token."""
    text = 0
    for message in body["messages"]:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        text += sum(len(p["text"]) for p in parts if p.get("type") == "text")
    pixels = 0
    for image in images:
        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert decoded is not None, "the fake model was sent an image that does not decode"
        height, width = decoded.shape[:2]
        pixels += math.ceil(height / 28) * math.ceil(width / 28)
    return math.ceil(text / 4) + pixels


@dataclass
class RecordedRequest:
    started: float
    finished: float
    colour: str | None
    body: dict[str, Any]
    colours: list[str] = field(default_factory=list)
    prompt_tokens: int = 0


@dataclass
class FakeVLM:
    """Shared state between the test and the server thread."""

    delay: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    malformed: bool = False
    refuse_response_format: bool = False
    # Accept response_format but answer chattily around fenced JSON (as some servers do).
    ignore_response_format: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    work_seconds: float = 0.0  # the fake's own parsing and image analysis, for the benchmark
    # Like vLLM: refuse a request whose prompt and max_tokens exceed this (None: no limit).
    context_tokens: int | None = None
    # Like vLLM without --limit-mm-per-prompt: refuse more images than this (None: no limit).
    max_images: int | None = None
    # Report this many times the prompt tokens it counted (a model that overruns estimates).
    usage_scale: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.delay, self.fail_next, self.fail_status, self.retry_after = 0.0, 0, 500, None
            self.malformed = self.refuse_response_format = self.ignore_response_format = False
            self.requests.clear()
            self.violations.clear()
            self.max_in_flight = 0
            self.work_seconds = 0.0
            self.context_tokens = self.max_images = None
            self.usage_scale = 1.0

    def image_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.colour is not None]


def validate(body: Any) -> tuple[list[str], list[bytes]]:
    """Return the protocol violations in a chat-completions body, and its images."""
    problems: list[str] = []
    images: list[bytes] = []
    if not isinstance(body, dict):
        return ["body is not an object"], []
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model missing")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        problems.append("max_tokens missing or not a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "messages missing"], []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            problems.append(f"bad message {message!r:.80}")
            continue
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            problems.append("content is neither a string nor a list of parts")
            continue
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                prefix = "data:image/jpeg;base64,"
                if not url.startswith(prefix):
                    problems.append("image is not an inline JPEG data URI")
                    continue
                image = base64.b64decode(url[len(prefix) :])
                if cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR) is None:
                    problems.append("image does not decode as JPEG")
                images.append(image)
                continue
            problems.append(f"bad part {part!r:.80}")
    return problems, images


def make_handler(state: FakeVLM) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the body waits ~40 ms for the
        # client's delayed ACK. Real servers (uvicorn, vLLM) set TCP_NODELAY too.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            if self.path != "/stats":
                self._send(404, {"error": {"message": "not found"}})
                return
            with state.lock:
                stats = {
                    "requests": len(state.requests),
                    "max_in_flight": state.max_in_flight,
                    "work_seconds": state.work_seconds,
                }
            self._send(200, stats)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if len(raw) < length:
                return  # The client hung up mid-request (a cancelled job): nothing to judge.
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            started = time.monotonic()
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._complete(raw, started)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _complete(self, raw: bytes, started: float) -> None:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = None
            problems, images = validate(body)
            if problems:
                with state.lock:
                    state.violations.extend(problems)
                self._send(400, {"error": {"message": "; ".join(problems)}})
                return
            if "response_format" in body and state.refuse_response_format:
                self._send(400, {"error": {"message": "response_format json_schema unsupported"}})
                return
            if state.max_images is not None and len(images) > state.max_images:
                message = f"At most {state.max_images} image(s) may be provided in one request."
                self._send(400, {"error": {"message": message, "type": "BadRequestError"}})
                return
            counted = prompt_tokens_of(body, images)
            prompt_tokens = math.ceil(counted * state.usage_scale)
            limit = state.context_tokens
            if limit is not None and counted + body["max_tokens"] > limit:
                message = (
                    f"This model's maximum context length is {limit} tokens. However, you "
                    f"requested {counted + body['max_tokens']} tokens ({counted} in "
                    f"the messages, {body['max_tokens']} in the completion). Please reduce the "
                    "length of the messages or completion."
                )
                with state.lock:  # sizing requests to fit is the client's job: a bug if not
                    state.violations.append(message)
                self._send(400, {"error": {"message": message, "type": "BadRequestError"}})
                return
            with state.lock:
                failing = state.fail_next > 0
                state.fail_next -= 1 if failing else 0
                delay = state.delay
            colours = [dominant_colour(image) for image in images]
            colour = Counter(colours).most_common(1)[0][0] if colours else None
            with state.lock:
                state.work_seconds += time.monotonic() - started
            time.sleep(delay)  # Simulated model latency.
            with state.lock:
                state.requests.append(
                    RecordedRequest(started, time.monotonic(), colour, body, colours, prompt_tokens)
                )
            if failing:
                headers = {"Retry-After": state.retry_after} if state.retry_after else {}
                self._send(state.fail_status, {"error": {"message": "induced failure"}}, headers)
                return
            self._send(
                200,
                completion(
                    body,
                    colours,
                    malformed=state.malformed,
                    chatty=state.ignore_response_format,
                    prompt_tokens=prompt_tokens,
                ),
            )

        def _send(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            # The client may have been killed mid-request (the resume tests do that on purpose).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    return Handler


def completion(
    body: dict[str, Any],
    colours: list[str],
    *,
    malformed: bool,
    chatty: bool = False,
    prompt_tokens: int = 0,
) -> dict[str, Any]:
    colour = colours[0] if colours else None
    if colour is None:
        text = body["messages"][-1]["content"]
        if "Group them into chapters" in text:
            content = json.dumps(chapters_answer(text))
        elif "Question: " in text:
            content = ask_answer(text)
        else:
            count = sum(1 for line in text.splitlines() if line.startswith("["))
            content = f"A video summarised from {count} captions."
    elif len(colours) > 1:
        content = json.dumps(segment_answer(colours))
    elif malformed:
        content = f"Sure! The frame is mostly {colour}. {{not json"
    elif chatty:
        content = (
            f"Here is the analysis:\n```json\n{json.dumps(answer_for(colour))}\n```\nAnything else?"
        )
    else:
        answer = answer_for(colour)
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        if schema is not None:
            answer = {k: v for k, v in answer.items() if k in schema["properties"]}
        content = json.dumps(answer)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content) // 4,
            "total_tokens": prompt_tokens + len(content) // 4,
        },
    }


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connection attempts when many requests start
    # at once (their SYNs are retried a second later); real servers listen with far more.
    request_queue_size = 128


class FakeVLMServer:
    """Run the fake on a free port in a daemon thread."""

    def __init__(self) -> None:
        self.state = FakeVLM()
        self.server = _Server(("127.0.0.1", 0), make_handler(self.state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeVLMServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """Run the fake on its own, as the benchmarks do:
    `python -m tests.support.fake_vlm --delay 0.2`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    state = FakeVLM(delay=args.delay)
    server = _Server(("127.0.0.1", args.port), make_handler(state))
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
