"""One error hierarchy for the whole service; each condition has a stable code.

    ScenecapError (500 INTERNAL_ERROR)
    ├── MalformedJson (400) · ValidationFailed (422)
    ├── Unauthenticated (401)
    ├── NotFound (404): JobNotFound, RouteNotFound
    ├── MethodNotAllowed (405)
    ├── Conflict (409): IdempotencyConflict, JobAlreadyFinished
    ├── RequestTooLarge (413) · MediaTooLarge (413)
    ├── UnsupportedMedia (415)
    ├── RateLimited (429): TooManyActiveJobs
    ├── UrlRejected (422): UnsupportedUrlScheme, UrlNotAllowed, InvalidMediaUrl, MediaUnreachable
    ├── MediaRejected (422): MediaUnreadable, NoVideoStream, DurationTooLong, ResolutionTooLarge
    ├── ServiceUnavailable (503): DatabaseUnavailable, BrokerUnavailable, VisionBackendUnavailable
    ├── CompletionTimeout (504)
    └── JobCancelled (not an HTTP error: the worker's signal to stop at a checkpoint)

API handlers turn any of these into ``{"error": {"code", "message", "details"}}``; the worker
stores ``code`` and ``message`` on the failed job.
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


class RouteNotFound(NotFound):
    code = "NOT_FOUND"


class MethodNotAllowed(ScenecapError):
    status_code, code = 405, "METHOD_NOT_ALLOWED"


class Conflict(ScenecapError):
    status_code, code = 409, "CONFLICT"


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class JobAlreadyFinished(Conflict):
    code = "JOB_ALREADY_FINISHED"


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


class UrlRejected(ScenecapError):
    status_code, code = 422, "INVALID_MEDIA_URL"


class InvalidMediaUrl(UrlRejected):
    code = "INVALID_MEDIA_URL"


class UnsupportedUrlScheme(UrlRejected):
    code = "UNSUPPORTED_URL_SCHEME"


class UrlNotAllowed(UrlRejected):
    code = "URL_NOT_ALLOWED"


class MediaUnreachable(UrlRejected):
    code = "MEDIA_UNREACHABLE"


class MediaRejected(ScenecapError):
    status_code, code = 422, "MEDIA_UNREADABLE"


class MediaUnreadable(MediaRejected):
    code = "MEDIA_UNREADABLE"


class NoVideoStream(MediaRejected):
    code = "NO_VIDEO_STREAM"


class DurationTooLong(MediaRejected):
    code = "DURATION_TOO_LONG"


class ResolutionTooLarge(MediaRejected):
    code = "RESOLUTION_TOO_LARGE"


class ServiceUnavailable(ScenecapError):
    status_code, code = 503, "SERVICE_UNAVAILABLE"


class DatabaseUnavailable(ServiceUnavailable):
    code = "DATABASE_UNAVAILABLE"


class BrokerUnavailable(ServiceUnavailable):
    code = "BROKER_UNAVAILABLE"


class VisionBackendUnavailable(ServiceUnavailable):
    code = "VISION_BACKEND_UNAVAILABLE"


class CompletionTimeout(ScenecapError):
    status_code, code = 504, "COMPLETION_TIMEOUT"


class JobCancelled(ScenecapError):
    code = "CANCELLED"


def error_for_code(code: str, message: str) -> ScenecapError:
    """Rebuild the error a stored code names (a failed job's), to answer with its status."""
    pending: list[type[ScenecapError]] = [ScenecapError]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls.__dict__.get("code") == code:
            return cls(message)
        pending.extend(cls.__subclasses__())
    return ScenecapError(message)
