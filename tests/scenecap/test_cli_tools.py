"""`scenecap analyze` and `scenecap submit --wait`, run as a user runs them."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import SCENECAP as SCENECAP_SCRIPT
from tests.conftest import SPOKEN
from tests.support.fake_asr import FakeASRServer

SCENECAP = [SCENECAP_SCRIPT]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    return {**env, **extra}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCENECAP, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env or clean_env(),
    )


def test_analyze_a_file_prints_json_with_scenes_and_stage_timings(media_dir: Path) -> None:
    done = run("analyze", str(media_dir / "sample.mp4"), "--scenes", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED" and job["percent_complete"] == 100
    frames = job["results"]["frames"]
    assert [(f["scene_start"], f["scene_end"]) for f in frames] == [
        (0.0, 3.0),
        (3.0, 6.0),
        (6.0, 9.0),
        (9.0, 12.0),
    ]
    assert list(job["timings"]) == [
        "downloading",
        "detecting_scenes",
        "extracting_frames",
        "captioning",
        "summarizing",
        "total",
    ]
    assert job["timings"]["total"] >= sum(v for k, v in job["timings"].items() if k != "total")
    # Not a terminal: plain progress lines, percent rising.
    percents = [int(line.split("%")[0]) for line in done.stderr.splitlines() if "%" in line]
    assert len(percents) >= 4 and percents == sorted(percents)


def test_analyze_in_segment_mode_runs_the_work_items_in_process(media_dir: Path) -> None:
    """The local backend: segments that follow the four scenes, chapters where they change."""
    done = run("analyze", str(media_dir / "sample.mp4"), "--segments", "2", "--scenes", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED" and job["segment_seconds"] == 2.0
    results = job["results"]
    # Four 3-second scenes, each split into two 1.5-second segments.
    assert [(s["start"], s["end"]) for s in results["segments"]] == [
        (1.5 * i, 1.5 * (i + 1)) for i in range(8)
    ]
    # Four frames asked for, three fit 1.5 s at MIN_FRAME_GAP_SECONDS (0.5 s) apart.
    assert all(len(s["frame_timestamps"]) == 3 for s in results["segments"])
    assert [c["segments"] for c in results["chapters"]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [c["start"] for c in results["chapters"]] == [0.0, 3.0, 6.0, 9.0]
    assert results["frames"] == [] and job["usage"]["segments"] == 8
    summary = run("analyze", str(media_dir / "sample.mp4"), "--segments", "6")
    assert summary.returncode == 0 and "chapters (6-second segments)" in summary.stdout


def test_analyze_transcribes_with_a_speech_server_and_refuses_without_one(
    media_dir: Path, fake_asr_server: FakeASRServer, fake_asr: Any
) -> None:
    clip = str(media_dir / "spoken.mp4")
    refused = run("analyze", clip, "--transcript")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith("scenecap: error: TRANSCRIPTION_UNAVAILABLE:")
    )
    env = clean_env(SCENECAP_ASR_BACKEND="openai", SCENECAP_ASR_BASE_URL=fake_asr_server.base_url)
    done = run("analyze", clip, "--transcript", "--segments", "10", "--json", env=env)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    words = [s["text"] for s in job["results"]["transcript"]["segments"]]
    assert len(words) == len(SPOKEN) and job["metadata"][-1] == "transcript"
    summary = run("analyze", clip, "--transcript", env=env)
    assert "transcript (english): alpha bravo charlie delta" in summary.stdout


def test_analyze_draws_a_progress_bar_on_a_terminal(media_dir: Path) -> None:
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb", buffering=0) as screen:
        process = subprocess.Popen(
            [*SCENECAP, "analyze", str(media_dir / "sample.mp4")],
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            env=clean_env(),
        )
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = screen.read(4096)
            except OSError:  # The child closed the terminal.
                break
            if not chunk:
                break
            drawn += chunk
        assert process.wait(timeout=120) == 0
    text = drawn.decode()
    assert "\r[" in text and "captioning" in text
    assert "100%" not in text.split("\r")[1]  # the bar starts low and is redrawn in place


def test_analyze_a_url_prints_a_readable_summary(media_server: str) -> None:
    done = run("analyze", f"{media_server}/sample.mp4", "--max-frames", "3")
    assert done.returncode == 0, done.stderr
    assert "red" in done.stdout and "time: downloading" in done.stdout
    assert len([line for line in done.stdout.splitlines() if " s  A " in line]) == 3


@pytest.mark.parametrize(
    ("target", "code"),
    [("missing.mp4", "MEDIA_UNREACHABLE"), ("notes.txt", "UNSUPPORTED_MEDIA")],
)
def test_analyze_errors_are_one_line_and_a_nonzero_exit(
    tmp_path: Path, target: str, code: str
) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    done = run("analyze", str(tmp_path / target))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"scenecap: error: {code}: ")
    assert "Traceback" not in done.stderr


def test_a_broken_video_fails_with_its_code(media_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((media_dir / "sample.mp4").read_bytes()[:3000])
    done = run("analyze", str(truncated))
    assert done.returncode == 1
    assert "scenecap: error: MEDIA_UNREADABLE" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.usefixtures("worker")
def test_submit_wait_follows_the_job_and_prints_it(
    api_url: str, new_key: Callable[[], str], media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.2
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=new_key())
    done = run("submit", f"{media_server}/sample.mp4", "--wait", "--max-frames", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert "captioning" in done.stderr  # live progress from the event stream
    assert len([line for line in done.stdout.splitlines() if " s  " in line]) == 3

    quick = run("submit", f"{media_server}/sample.mp4", "--max-frames", "1", env=env)
    assert quick.returncode == 0 and len(quick.stdout.strip()) == 36  # the job id


@pytest.mark.usefixtures("worker")
def test_submit_errors_are_one_line(api_url: str, media_server: str) -> None:
    wrong_key = run(
        "submit", f"{media_server}/sample.mp4", "--api-url", api_url, "--api-key", "sc_wrong"
    )
    assert wrong_key.returncode == 1
    assert wrong_key.stderr.startswith("scenecap: error: UNAUTHENTICATED: ")
    nowhere = run(
        "submit", "https://example.com/a.mp4", "--api-url", "http://127.0.0.1:9", "--api-key", "k"
    )
    assert nowhere.returncode == 1 and "cannot reach http://127.0.0.1:9" in nowhere.stderr
    no_key = run("submit", "https://example.com/a.mp4")
    assert no_key.returncode == 2 and "SCENECAP_API_KEY" in no_key.stderr
    for done in (wrong_key, nowhere, no_key):
        assert "Traceback" not in done.stderr


@pytest.mark.usefixtures("worker")
def test_submit_many_sends_batches_and_reports_each_target(
    api_url: str,
    new_key: Callable[[], str],
    media_server: str,
    media_dir: Path,
    fake_vlm: Any,
    tmp_path: Path,
) -> None:
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=new_key())
    listed = tmp_path / "targets.txt"
    listed.write_text(f"# tonight's clips\n{media_server}/sample.mp4\n\nftp://example.com/x.mp4\n")
    local = str(media_dir / "sample.mp4")  # uploaded first
    done = run("submit", local, "--from-file", str(listed), "--max-frames", "1", "--wait", env=env)
    assert done.returncode == 1, "one target was refused"
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(f"COMPLETED  {local}") and lines[1].endswith("/sample.mp4")
    assert "COMPLETED" in lines[1]
    assert lines[2].startswith("refused") and "UNSUPPORTED_URL_SCHEME" in lines[2]
    ok = run("submit", local, f"{media_server}/sample.mp4", "--max-frames", "1", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["status"] for line in ok.stdout.splitlines()] == [202, 202]


@pytest.mark.usefixtures("worker")
def test_submit_reports_a_missing_file_on_its_own_line_and_sends_the_rest(
    api_url: str, new_key: Callable[[], str], media_server: str, media_dir: Path
) -> None:
    key = new_key()
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=key)
    local = str(media_dir / "sample.mp4")
    done = run("submit", "nowhere.mp4", local, f"{media_server}/sample.mp4", env=env)
    assert done.returncode == 1, "one target was refused"
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and "Traceback" not in done.stderr
    assert (
        lines[0].startswith("refused")
        and "MEDIA_UNREACHABLE: no such file: nowhere.mp4" in lines[0]
    )
    assert lines[1].endswith(f"  {local}") and len(lines[1].split()[0]) == 36  # uploaded, sent
    uploaded = httpx.get(
        f"{api_url}/v2/media/categories/{lines[1].split()[0]}",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert uploaded["media_name"] == "sample.mp4"  # the file's own name, not upload://…
    alone = run("submit", "nowhere.mp4", env=env)
    assert alone.returncode == 1
    assert alone.stderr.strip() == "scenecap: error: MEDIA_UNREACHABLE: no such file: nowhere.mp4"


def test_submit_refuses_options_it_would_ignore_before_sending_anything(
    api_url: str, new_key: Callable[[], str], media_dir: Path
) -> None:
    key = new_key()
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=key)
    local = str(media_dir / "sample.mp4")
    for options, why in (
        (["--frames-per-segment", "3"], "--frames-per-segment needs --segments"),
        (["--segments", "10", "--max-frames", "3"], "--max-frames is for frame mode"),
        (["--scene-threshold", "30"], "--scene-threshold needs --scenes"),
        (["--min-scene-seconds", "1"], "--min-scene-seconds needs --scenes"),
    ):
        refused = run("submit", local, *options, env=env)
        assert refused.returncode == 1 and "uploading" not in refused.stderr
        assert refused.stderr.startswith(f"scenecap: error: VALIDATION_ERROR: {why}")
    out_of_range = run("submit", local, "--max-frames", "99", env=env)
    assert out_of_range.returncode == 2 and "must be from 1 to 60" in out_of_range.stderr
    assert "59" not in out_of_range.stderr  # no list of the 60 allowed numbers
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.get("/v2/media/categories").json()["data"] == []


def test_submit_checks_the_key_before_uploading(api_url: str, media_dir: Path) -> None:
    done = run("submit", str(media_dir / "sample.mp4"), "--api-url", api_url, "--api-key", "sc_x")
    assert done.returncode == 1 and "uploading" not in done.stderr
    assert done.stderr.startswith("scenecap: error: UNAUTHENTICATED: ")


@pytest.mark.usefixtures("worker")
def test_submit_wait_shows_a_failed_job_and_an_image_readably(
    api_url: str, new_key: Callable[[], str], media_server: str, fake_vlm: Any
) -> None:
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=new_key())
    failed = run("submit", f"{media_server}/truncated.mp4", "--wait", env=env)
    assert failed.returncode == 1
    assert "None" not in failed.stdout and "FAILED: MEDIA_UNREADABLE" in failed.stdout
    image = run("submit", f"{media_server}/purple.png", "--wait", env=env)
    assert image.returncode == 0, image.stderr
    assert not image.stdout.lstrip().startswith("{") and "purple" in image.stdout.lower()


@pytest.mark.usefixtures("worker")
def test_search_and_ask_print_times_and_fail_in_one_line(
    api_url: str, new_key: Callable[[], str], media_server: str, fake_vlm: Any
) -> None:
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=new_key())
    done = run(
        "submit", f"{media_server}/sample.mp4", "--wait", "--max-frames", "2", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    times = [f["timestamp"] for f in job["results"]["frames"]]

    found = run("search", "background", "--job", job["job_id"], env=env)
    assert found.returncode == 0, found.stderr
    lines = [line for line in found.stdout.splitlines() if "frame" in line]
    assert len(lines) == 2 and all(line.startswith(job["job_id"]) for line in lines)
    assert all("*background*" in line for line in lines)  # not a terminal: matches in *stars*
    page = json.loads(run("search", "background", "--limit", "1", "--json", env=env).stdout)
    assert len(page["data"]) == 1 and page["next_cursor"]
    nothing = run("search", "zebra", env=env)
    assert nothing.returncode == 0 and nothing.stdout == "" and "no matches" in nothing.stderr

    asked = run("ask", job["job_id"], "Which", "background?", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    citations = json.loads(asked.stdout)["citations"]
    assert citations and {c["start"] for c in citations} <= set(times)
    readable = run("ask", job["job_id"], "Which background?", env=env)
    assert readable.returncode == 0 and " s  frame: " in readable.stdout

    missing = run("ask", "00000000-0000-0000-0000-000000000000", "what?", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("scenecap: error: JOB_NOT_FOUND: ")
    bad = run("search", "x", "--limit", "0", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("scenecap: error: VALIDATION_ERROR")
    for failed in (missing, bad):
        assert "Traceback" not in failed.stderr and len(failed.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["photo.jpg", "photo.jpeg", "photo.png"])
def test_analyze_reads_a_local_photo_whatever_its_extension(tmp_path: Path, name: str) -> None:
    # FFmpeg picks its image2 demuxer by the .jpg name for a photo this size, and image2
    # refuses any seek: the extractor once seeked there and failed every local JPEG.
    pixels = (np.random.default_rng(1).random((480, 720, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(tmp_path / name), pixels)
    done = run("analyze", str(tmp_path / name), "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED" and job["media_type"] == "image"


def test_analyze_counts_in_words_that_agree(media_dir: Path) -> None:
    done = run("analyze", str(media_dir / "sample.mp4"), "--max-frames", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert "; 1 frame was measured" in json.loads(done.stdout)["results"]["description"]
    one = run("analyze", str(media_dir / "sample.mp4"), "--segments", "600", "--json")
    assert one.returncode == 0, one.stderr
    results = json.loads(one.stdout)["results"]
    assert " in 1 chapter: " in results["description"] and "chapters:" not in results["description"]
