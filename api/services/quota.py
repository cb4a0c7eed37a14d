"""A key's limits, held under concurrency (docs/api.md, "Cost controls"): at most
MAX_ACTIVE_JOBS_PER_KEY jobs pending or running, and at most its daily token quota spent.

Both are checked under a lock on the key's row, in the transaction that stores the job, so
sixty submissions at once see each other. A job reserves tokens as it is stored (the least
a job costs; its worker reserves its plan's estimate once the media is probed); the quota's
room is the day's ledger plus what active jobs still hold.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy.orm import Session

from api.auth import Caller
from db import spend
from scenecap.core.enums import JobKind, utcnow
from scenecap.core.errors import QuotaExceeded, TooManyActiveJobs
from scenecap.core.settings import Settings


def admit(
    session: Session, key: Caller, settings: Settings, *, kind: JobKind, estimate: int
) -> int | None:
    """Lock the key, check its limits for one more job of `kind` costing at least
    `estimate` tokens; return what the job reserves (None: the key has no quota)."""
    most = settings.max_active_jobs_per_key
    if key.tokens_per_day is None and not (kind == JobKind.CATEGORIES and most):
        return None  # nothing to count: submissions of the key need not queue on its lock
    now = spend.standing(session, key.id)
    if kind == JobKind.CATEGORIES and most and now.active >= most:
        raise TooManyActiveJobs(
            f"this key already has {most} jobs pending or running; wait for some to end",
            {"limit": most, "retry_after": 10},
        )
    if now.quota is None:
        return None
    if now.used + estimate > now.quota:
        raise exceeded(now.quota, now.used)
    return estimate


def charge(session: Session, key: Caller, estimate: int) -> None:
    """Charge `estimate` tokens to the key's ledger for today now, if its quota (under the
    key's lock) has room for them: a question answered in the API, whose charge is corrected
    to what the model reported once it answered."""
    if key.tokens_per_day is not None:
        now = spend.standing(session, key.id)
        if now.quota is not None and now.used + estimate > now.quota:
            raise exceeded(now.quota, now.used)
    spend.record(session, key.id, spend.Spent(prompt_tokens=estimate))


def exceeded(limit: int, used: int) -> QuotaExceeded:
    """429 QUOTA_EXCEEDED with the reset time (midnight UTC) in the details and Retry-After."""
    now = utcnow()
    resets = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return QuotaExceeded(
        f"this key has used or holds {used:,} of its {limit:,} tokens for today (UTC); "
        f"new work is accepted again at {resets.isoformat()}",
        {
            "limit": limit,
            "used": used,
            "resets_at": resets.isoformat(),
            "retry_after": math.ceil((resets - now).total_seconds()),
        },
    )
