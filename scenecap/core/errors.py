"""One error hierarchy for the whole service; each condition has a stable code.

    ScenecapError (500 INTERNAL_ERROR)
    ├── MalformedJson (400) · ValidationFailed (422)
    ├── Unauthenticated (401)
    ├── NotFound (404): JobNotFound, KeyNotFound, UploadNotFound, StoredObjectMissing
    ├── MethodNotAllowed (405)
    ├── WaitTimeout (408, the client's own: a wait ran out) · RequestTimeout (408: a body
    │   stalled past UPLOAD_IDLE_SECONDS)
    ├── Conflict (409): IdempotencyConflict, JobAlreadyFinished, NoWebhookEvent,
    │                  KeyAmbiguous, JobNotFinished
    ├── RequestTooLarge (413) · MediaTooLarge (413)
    ├── UnsupportedMedia (415)
    ├── RateLimited (429): TooManyActiveJobs, QuotaExceeded, TooManyStreams, TooManyUploads
    ├── ModelNotAllowed (422) · BudgetTooSmall (422) · TranscriptionUnavailable (422)
    ├── UrlRejected (422): UnsupportedUrlScheme, UrlNotAllowed, InvalidMediaUrl, MediaUnreachable
    ├── MediaRejected (422): MediaUnreadable, NoVideoStream, DurationTooLong, ResolutionTooLarge
    ├── ServiceUnavailable (503): DatabaseUnavailable, BrokerUnavailable, VisionBackendUnavailable,
    │                             StoreUnavailable
    ├── CompletionTimeout (504)
    ├── WorkerLost (a job's error code only: its worker died on it too often)
    └── JobCancelled (not an HTTP error: the worker's signal to stop at a checkpoint)

API handlers turn any of these into ``{"error": {"code", "message", "details"}}``; the worker
stores ``code`` and ``message`` on the failed job. Every class has a code of its own (the base
classes' codes name the family), so a code names exactly one class: `error_for_code` rebuilds
it, and a client can `except InvalidMediaUrl`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ScenecapError(Exception):
    """Base of every error scenecap raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class MalformedJson(ScenecapError):
    status_code, code = 400, "MALFORMED_JSON"


class ValidationFailed(ScenecapError):
    status_code, code = 422, "VALIDATION_ERROR"


class Unauthenticated(ScenecapError):
    status_code, code = 401, "UNAUTHENTICATED"


class NotFound(ScenecapError):
    status_code, code = 404, "NOT_FOUND"


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class KeyNotFound(NotFound):
    code = "KEY_NOT_FOUND"


class UploadNotFound(NotFound):
    code = "UPLOAD_NOT_FOUND"


class StoredObjectMissing(NotFound):
    """An object the media store should hold is not there (deleted, or never written)."""

    code = "STORED_OBJECT_MISSING"


class MethodNotAllowed(ScenecapError):
    status_code, code = 405, "METHOD_NOT_ALLOWED"


class WaitTimeout(ScenecapError):
    status_code, code = 408, "WAIT_TIMEOUT"


class RequestTimeout(ScenecapError):
    status_code, code = 408, "REQUEST_TIMEOUT"


class Conflict(ScenecapError):
    status_code, code = 409, "CONFLICT"


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class JobAlreadyFinished(Conflict):
    code = "JOB_ALREADY_FINISHED"


class NoWebhookEvent(Conflict):
    code = "NO_WEBHOOK_EVENT"


class KeyAmbiguous(Conflict):
    code = "KEY_AMBIGUOUS"


class JobNotFinished(Conflict):
    code = "JOB_NOT_FINISHED"


class RangeNotSatisfiable(ScenecapError):
    status_code, code = 416, "RANGE_NOT_SATISFIABLE"


class RequestTooLarge(ScenecapError):
    status_code, code = 413, "REQUEST_TOO_LARGE"


class MediaTooLarge(ScenecapError):
    status_code, code = 413, "MEDIA_TOO_LARGE"


class UnsupportedMedia(ScenecapError):
    status_code, code = 415, "UNSUPPORTED_MEDIA"


class RateLimited(ScenecapError):
    status_code, code = 429, "RATE_LIMITED"

    @property
    def retry_after(self) -> int:
        return int(self.details.get("retry_after", 1))


class TooManyActiveJobs(RateLimited):
    code = "TOO_MANY_ACTIVE_JOBS"


class QuotaExceeded(RateLimited):
    code = "QUOTA_EXCEEDED"


class TooManyStreams(RateLimited):
    """Past MAX_STREAMS_PER_JOB or MAX_STREAMS_PER_KEY open event streams."""

    code = "TOO_MANY_STREAMS"


class TooManyUploads(RateLimited):
    """Past MAX_UPLOADS_PER_KEY uploads in progress at once."""

    code = "TOO_MANY_UPLOADS"


class ModelNotAllowed(ScenecapError):
    """A request named a model that is neither VLM_MODEL nor one of VLM_MODELS."""

    status_code, code = 422, "MODEL_NOT_ALLOWED"


class BudgetTooSmall(ScenecapError):
    """max_total_tokens is below what one frame and the summary cost."""

    status_code, code = 422, "BUDGET_TOO_SMALL"


class UrlRejected(ScenecapError):
    status_code, code = 422, "URL_REJECTED"


class InvalidMediaUrl(UrlRejected):
    code = "INVALID_MEDIA_URL"


class UnsupportedUrlScheme(UrlRejected):
    code = "UNSUPPORTED_URL_SCHEME"


class UrlNotAllowed(UrlRejected):
    code = "URL_NOT_ALLOWED"


class MediaUnreachable(UrlRejected):
    code = "MEDIA_UNREACHABLE"


class MediaRejected(ScenecapError):
    status_code, code = 422, "MEDIA_REJECTED"


class MediaUnreadable(MediaRejected):
    code = "MEDIA_UNREADABLE"


class NoVideoStream(MediaRejected):
    code = "NO_VIDEO_STREAM"


class DurationTooLong(MediaRejected):
    code = "DURATION_TOO_LONG"


class ResolutionTooLarge(MediaRejected):
    code = "RESOLUTION_TOO_LARGE"


class PortInUse(ScenecapError):
    """`scenecap dev` was asked for a port something already listens on."""

    code = "PORT_IN_USE"


class WorkerLost(ScenecapError):
    """A job's worker died on it too many times (its media may kill the decoder)."""

    code = "WORKER_LOST"


class ServiceUnavailable(ScenecapError):
    status_code, code = 503, "SERVICE_UNAVAILABLE"


class DatabaseUnavailable(ServiceUnavailable):
    code = "DATABASE_UNAVAILABLE"


class BrokerUnavailable(ServiceUnavailable):
    code = "BROKER_UNAVAILABLE"


class VisionBackendUnavailable(ServiceUnavailable):
    code = "VISION_BACKEND_UNAVAILABLE"


class StoreUnavailable(ServiceUnavailable):
    code = "STORE_UNAVAILABLE"


class SpeechBackendUnavailable(ServiceUnavailable):
    code = "SPEECH_BACKEND_UNAVAILABLE"


class TranscriptionUnavailable(ScenecapError):
    """`transcript` was asked for, but no speech backend is configured (ASR_BACKEND=none)."""

    status_code, code = 422, "TRANSCRIPTION_UNAVAILABLE"


class CompletionTimeout(ScenecapError):
    status_code, code = 504, "COMPLETION_TIMEOUT"


class JobCancelled(ScenecapError):
    code = "CANCELLED"


def _all_error_classes() -> list[type[ScenecapError]]:
    found, pending = [], [ScenecapError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _by_code() -> dict[str, type[ScenecapError]]:
    classes = _all_error_classes()
    table = {cls.code: cls for cls in classes}
    if len(table) != len(classes):
        raise RuntimeError("two error classes share a code")
    return table


ERRORS_BY_CODE = _by_code()


def error_for_code(code: str, message: str, details: dict[str, Any] | None = None) -> ScenecapError:
    """Rebuild the error a code names (a failed job's, or an API error's); unknown codes give
    the base class, which keeps the message."""
    return ERRORS_BY_CODE.get(code, ScenecapError)(message, details)
