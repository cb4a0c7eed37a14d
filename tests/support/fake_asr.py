"""A stand-in for a speech server: a real HTTP server on 127.0.0.1 speaking OpenAI's
POST /v1/audio/transcriptions (multipart form, `verbose_json`, `timestamp_granularities[]`).

It checks every request (the form fields, a WAV of 16 kHz mono 16-bit audio under 25 MB)
and answers deterministically from the sound: one segment per tone burst, at its time in
the chunk, whose text names the tone's pitch (440 Hz "alpha", 660 "bravo", 880 "charlie",
1100 "delta", 1320 "echo"). It can be told to be slow, to fail, or to answer without
segments, as plain servers do.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
import time
import wave
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from typing import Any

import numpy as np

WORDS = {440: "alpha", 660: "bravo", 880: "charlie", 1100: "delta", 1320: "echo"}
MAX_BYTES = 25 * 1024 * 1024
_WINDOW = 160  # 10 ms at 16 kHz


def bursts(samples: np.ndarray, rate: int) -> list[tuple[float, float, str]]:
    """(start, end, word) of each stretch of tone in the samples."""
    windows = len(samples) // _WINDOW
    if windows == 0:
        return []
    frames = samples[: windows * _WINDOW].astype(np.float64).reshape(windows, _WINDOW)
    loud = np.sqrt((frames**2).mean(axis=1)) > 1000
    found: list[tuple[float, float, str]] = []
    start = None
    for n, on in enumerate([*loud.tolist(), False]):
        if on and start is None:
            start = n
        elif not on and start is not None:
            piece = samples[start * _WINDOW : n * _WINDOW].astype(np.float64)
            spectrum = np.abs(np.fft.rfft(piece))
            pitch = float(np.fft.rfftfreq(len(piece), 1 / rate)[int(spectrum.argmax())])
            word = WORDS[min(WORDS, key=lambda f: abs(f - pitch))]
            found.append((start * _WINDOW / rate, n * _WINDOW / rate, word))
            start = None
    return found


@dataclass
class Heard:
    """One request as the fake saw it."""

    seconds: float
    bytes: int
    words: list[str]


@dataclass
class FakeASR:
    delay: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    without_segments: bool = False
    language: str = "english"
    requests: list[Heard] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    work_seconds: float = 0.0  # the fake's own parsing and analysis, for the benchmark
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.delay, self.fail_next, self.fail_status = 0.0, 0, 500
            self.without_segments, self.language = False, "english"
            self.requests.clear()
            self.violations.clear()
            self.max_in_flight = 0


def read_form(content_type: str, body: bytes) -> dict[str, Any]:
    """The multipart form's fields (text) and files (bytes)."""
    message = BytesParser(policy=default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        form[str(name)] = payload if part.get_filename() else payload.decode()
    return form


def check(form: dict[str, Any]) -> tuple[list[str], np.ndarray, int]:
    problems = []
    if not form.get("model"):
        problems.append("model missing")
    if form.get("response_format") != "verbose_json":
        problems.append("response_format is not verbose_json")
    if form.get("timestamp_granularities[]") != "segment":
        problems.append("timestamp_granularities[] is not segment")
    audio = form.get("file")
    if not isinstance(audio, bytes):
        return [*problems, "no file"], np.zeros(0, np.int16), 0
    if len(audio) > MAX_BYTES:
        problems.append(f"file of {len(audio)} bytes is over 25 MB")
    try:
        with wave.open(io.BytesIO(audio)) as sound:
            if (sound.getnchannels(), sound.getframerate(), sound.getsampwidth()) != (
                1,
                16000,
                2,
            ):
                problems.append("audio is not 16 kHz mono 16-bit")
            samples = np.frombuffer(sound.readframes(sound.getnframes()), "<i2")
            return problems, samples, sound.getframerate()
    except (wave.Error, EOFError):
        return [*problems, "file is not a WAV"], np.zeros(0, np.int16), 0


def make_handler(state: FakeASR) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            if self.path != "/stats":
                self._send(404, {"error": {"message": "not found"}})
                return
            with state.lock:
                stats = {"requests": len(state.requests), "work_seconds": state.work_seconds}
            self._send(200, stats)

        def do_POST(self) -> None:
            started = time.monotonic()
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/audio/transcriptions":
                self._send(404, {"error": {"message": "not found"}})
                return
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._transcribe(body, started)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _transcribe(self, body: bytes, started: float) -> None:
            problems, samples, rate = check(read_form(self.headers["content-type"], body))
            if problems:
                with state.lock:
                    state.violations.extend(problems)
                self._send(400, {"error": {"message": "; ".join(problems)}})
                return
            with state.lock:
                failing = state.fail_next > 0
                state.fail_next -= 1 if failing else 0
            found = bursts(samples, rate)
            with state.lock:
                state.work_seconds += time.monotonic() - started
            time.sleep(state.delay)  # simulated model latency
            if failing:
                self._send(state.fail_status, {"error": {"message": "induced failure"}})
                return
            with state.lock:
                state.requests.append(
                    Heard(len(samples) / rate, len(body), [word for _s, _e, word in found])
                )
            answer: dict[str, Any] = {"text": " ".join(word for _s, _e, word in found)}
            if not state.without_segments:
                answer |= {
                    "task": "transcribe",
                    "language": state.language,
                    "duration": len(samples) / rate,
                    "segments": [
                        {"id": n, "start": round(s, 3), "end": round(e, 3), "text": f" {word}"}
                        for n, (s, e, word) in enumerate(found)
                    ],
                }
            self._send(200, answer)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class FakeASRServer:
    """Run the fake on a free port in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self.state = FakeASR()
        self.server = _Server(("127.0.0.1", port), make_handler(self.state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeASRServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """Run the fake on its own, as the benchmarks do:
    `python -m tests.support.fake_asr --delay 0.2`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeASRServer()
    server.state.delay = args.delay
    print(server.base_url, flush=True)
    server.server.serve_forever()


if __name__ == "__main__":
    main()
