"""The one settings class (environment prefix ``SCENECAP_``), read through ``get_settings()``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_HOME = Path.home() / ".scenecap"

# Qwen2-VL: 768 image tokens of 28x28 pixels each.
DEFAULT_MAX_PIXELS = 768 * 28 * 28
# Generous bound on a frame request's text: system prompt, instructions and JSON schema.
FRAME_PROMPT_TOKENS = 400


class Settings(BaseSettings):
    """Everything configurable about scenecap; see the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="SCENECAP_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = f"sqlite:///{DEV_HOME / 'scenecap.db'}"
    # "embedded" selects kombu's filesystem transport under DEV_HOME: no broker process needed.
    broker_url: str = "embedded"
    embedded_broker_dir: Path = DEV_HOME / "broker"
    # file://<dir> (one machine) or s3://<bucket>/<prefix>; AWS_* variables hold S3 credentials.
    media_store: str = f"file://{DEV_HOME / 'media'}"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    upload_ttl_hours: float = Field(24.0, gt=0)
    media_retention_hours: float = Field(24.0, gt=0)
    retention_interval_seconds: int = Field(300, ge=1)

    # Segment mode (long videos): the cap on segments, how many one task captions, and the
    # length of the chunks scene detection is split into across workers.
    max_segments: int = Field(2000, ge=1)
    segments_per_task: int = Field(8, ge=1)
    scene_chunk_seconds: float = Field(300.0, ge=10)
    # "json": one JSON object per line (for log shippers), with the job id when there is one.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    vision_backend: Literal["local", "openai"] = "local"
    vlm_base_url: str = "http://127.0.0.1:8001/v1"
    vlm_api_key: SecretStr = SecretStr("")
    vlm_model: str = "Qwen/Qwen2-VL-7B-Instruct"
    # Other models a job or completion may name (comma-separated); VLM_MODEL always may.
    vlm_models: str = ""
    vlm_context_tokens: int = Field(32768, ge=1024)
    vlm_max_concurrency: int = Field(8, ge=1, le=256)
    vlm_timeout_seconds: float = Field(120.0, gt=0)
    vlm_max_retries: int = Field(4, ge=0, le=20)
    vlm_temperature: float = Field(0.1, ge=0, le=2)
    # Images in one request (vLLM takes one unless started with --limit-mm-per-prompt); a
    # server that says it takes fewer lowers it.
    vlm_max_images_per_request: int = Field(8, ge=1, le=64)
    caption_max_tokens: int = Field(300, ge=16)

    # Speech (README, "Speech"): `openai`, any server with OpenAI's POST
    # /v1/audio/transcriptions; `local`, faster-whisper in the worker (scenecap[speech]).
    asr_backend: Literal["none", "openai", "local"] = "none"
    # local: a CTranslate2 Whisper model's folder, how its weights compute, on what, with how
    # many threads (0: one per core).
    asr_model_path: str = ""
    asr_compute_type: str = "int8"
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_threads: int = Field(0, ge=0, le=256)
    asr_base_url: str = "http://127.0.0.1:8002/v1"
    asr_api_key: SecretStr = SecretStr("")
    asr_model: str = "whisper-1"
    # 16 kHz 16-bit mono WAV is 32 kB a second: 600 s stays well under servers' 25 MB.
    asr_chunk_seconds: float = Field(300.0, ge=10, le=600)
    asr_max_concurrency: int = Field(4, ge=1, le=64)
    asr_timeout_seconds: float = Field(300.0, gt=0)
    asr_max_retries: int = Field(4, ge=0, le=20)
    summary_prompt_tokens: int = Field(1024, ge=0)
    summary_max_tokens: int = Field(1024, ge=16)

    allow_private_urls: bool = False
    max_media_bytes: int = Field(2 * 1024**3, ge=1)
    max_request_bytes: int = Field(32 * 1024**2, ge=1024)
    fetch_timeout_seconds: float = Field(300.0, gt=0)
    fetch_connect_timeout_seconds: float = Field(10.0, gt=0)
    fetch_max_redirects: int = Field(5, ge=0, le=20)
    max_duration_seconds: float = Field(4 * 3600.0, gt=0)
    max_input_pixels: int = Field(8192 * 8192, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=28 * 28)
    min_frame_gap_seconds: float = Field(0.5, ge=0)
    # `keyframe` takes a keyframe near the planned time when there is one (fast); `exact`
    # always the frame on screen at the planned time.
    extract_policy: Literal["exact", "keyframe"] = "keyframe"
    keyframe_tolerance_seconds: float | None = Field(None, ge=0)
    # Decoder threads sharing a video's keyframe groups (None: one per CPU, at most four).
    extract_decoders: int | None = Field(None, ge=1, le=64)
    # Decoding runs in a child process with these limits (address space, wall clock per step).
    decode_memory_mb: int = Field(4096, ge=256)
    decode_timeout_seconds: float = Field(3600.0, gt=0)
    scene_detector: Literal["content", "adaptive"] = "content"
    scene_threshold: float | None = Field(None, gt=0)
    # The shortest scene the detector may cut (PySceneDetect counts 15 frames: 1.5 s at 10 fps,
    # which lost every shot of a one-second-a-shot clip).
    min_scene_seconds: float = Field(0.5, ge=0, le=60)
    jpeg_quality: int = Field(85, ge=30, le=100)
    image_inline_wait_seconds: float = Field(20.0, ge=0)
    completion_wait_seconds: float = Field(120.0, gt=0)
    completion_video_frames: int = Field(8, ge=1, le=60)

    # Requests per key per minute, counted in Redis across API processes (0: no limit; the
    # embedded broker has no Redis, so `dev` never limits).
    rate_limit_per_minute: int = Field(600, ge=0)
    # PENDING + PROCESSING jobs one key may have at once (0: no cap).
    max_active_jobs_per_key: int = Field(50, ge=0)
    # How long an API process trusts a key lookup: a revoked key works at most this long.
    key_cache_seconds: float = Field(1.0, ge=0, le=60)
    # Bearer token for GET /metrics (production refuses scrapes while it is unset).
    metrics_token: SecretStr | None = None  # at least 16 characters
    metrics_cache_seconds: float = Field(5.0, ge=0)

    # Signs share links (docs/api.md, "Sharing"); production refuses to start without one.
    # Elsewhere, unset, a random one is kept in DEV_HOME/secret_key.
    secret_key: SecretStr | None = None  # at least 32 characters
    # Bounds on what an unauthenticated or hostile client can hold (docs/api.md, "Limits").
    url_check_seconds: float = Field(5.0, gt=0, le=60)
    url_checks_in_flight: int = Field(64, ge=1)
    max_json_bytes: int = Field(1024**2, ge=1024)
    body_bytes_in_flight: int = Field(96 * 1024**2, ge=1024**2)
    upload_idle_seconds: float = Field(30.0, gt=0)
    header_timeout_seconds: float = Field(10.0, gt=0)
    max_uploads_per_key: int = Field(4, ge=1)
    max_streams_per_job: int = Field(10, ge=1)
    max_streams_per_key: int = Field(100, ge=1)
    stream_max_seconds: float = Field(3600.0, gt=0)
    # Per share token and per client address; a report's pictures count (each is a request).
    share_rate_limit_per_minute: int = Field(600, ge=1)
    # Where clients reach this service (https://media.example.com): share links are made
    # absolute with it; empty, they are paths on whatever host was asked.
    public_base_url: str = Field("", pattern=r"^(https?://[^/?#\s]+(/[^?#\s]*)?)?$")
    statement_timeout_seconds: float = Field(15.0, gt=0)

    webhook_timeout_seconds: float = Field(10.0, gt=0)
    # Seconds before each attempt (Svix's schedule): now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    webhook_retry_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_secret_grace_seconds: float = Field(24 * 3600.0, ge=0)

    job_lease_seconds: int = Field(120, ge=5)
    reaper_interval_seconds: int = Field(60, ge=1)
    job_max_attempts: int = Field(3, ge=1)
    progress_min_interval_seconds: float = Field(0.25, ge=0)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_is_numbers(cls, value: str) -> str:
        [float(part) for part in value.split(",")]
        return value

    @field_validator("metrics_token", "secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        least = {"metrics_token": 16, "secret_key": 32}[str(info.field_name)]
        if value is not None and len(value.get_secret_value()) < least:
            raise ValueError(f"at least {least} characters (a random string: it is a secret)")
        return value

    @field_validator("media_store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")) or value in ("file://", "s3://"):
            raise ValueError("MEDIA_STORE is file://<folder> or s3://<bucket>/<prefix>")
        return value

    @field_validator("metrics_token", "secret_key", "s3_endpoint_url", "s3_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes an unset variable as "" (`${SCENECAP_METRICS_TOKEN:-}`).
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.allow_private_urls:
                raise ValueError("ALLOW_PRIVATE_URLS must stay off in production (SSRF)")
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs PostgreSQL: set SCENECAP_DATABASE_URL")
            if self.broker_url == "embedded":
                raise ValueError("production needs a real broker: set SCENECAP_BROKER_URL")
            if self.secret_key is None:
                raise ValueError("production needs SCENECAP_SECRET_KEY (it signs share links)")
        return self

    @property
    def allowed_models(self) -> frozenset[str]:
        """The models a request may name: VLM_MODEL and those of VLM_MODELS."""
        named = (name.strip() for name in self.vlm_models.split(","))
        return frozenset({self.vlm_model, *filter(None, named)})

    @property
    def frame_max_pixels(self) -> int:
        """MAX_PIXELS, lowered until one frame's image tokens, prompt and caption fit a request."""
        room = self.vlm_context_tokens - self.caption_max_tokens - FRAME_PROMPT_TOKENS
        return max(4 * 28 * 28, min(self.max_pixels, room * 28 * 28))

    @property
    def frame_budget(self) -> int:
        """How many captions of CAPTION_MAX_TOKENS fit into the summarising model's context."""
        room = self.vlm_context_tokens - self.summary_prompt_tokens - self.summary_max_tokens
        return max(1, room // self.caption_max_tokens)


def config_problems(error: ValidationError) -> list[str]:
    """Each problem of a settings error as `SCENECAP_<NAME>: <why>`, never its value (the
    value may be a secret, and pydantic's own message prints it)."""
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        location = problem.get("loc") or ()
        name = f"SCENECAP_{str(location[0]).upper()}: " if location else ""
        why = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{name}{why}")
    return problems


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
