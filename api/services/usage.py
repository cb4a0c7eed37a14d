"""GET /v2/usage: what the caller's jobs used, per UTC day (docs/api.md, "Usage")."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from api.auth import Caller
from db import usage
from scenecap.core.enums import utcnow
from scenecap.core.errors import ValidationFailed
from scenecap.schemas.cost import UsageDay, UsageReport

DEFAULT_DAYS = 30
MOST_DAYS = 366
_WHOLE = {name for name in usage.FIGURES if not name.endswith("_seconds")}  # counts


def usage_report(session: Session, key: Caller, first: str | None, last: str | None) -> UsageReport:
    end = _day(last, "to") if last else utcnow().date()
    start = _day(first, "from") if first else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ValidationFailed("from: after to", {"field": "from"})
    if (end - start).days + 1 > MOST_DAYS:
        raise ValidationFailed(
            f"from..to: at most {MOST_DAYS} days at a time", {"field": "from", "limit": MOST_DAYS}
        )
    days = usage.by_day(session, key.id, start, end)
    total = _empty()
    for figures in days.values():
        for status, count in figures["jobs"].items():
            total["jobs"][status] = total["jobs"].get(status, 0) + count
        for name in usage.FIGURES:
            total[name] += figures[name]
    per_day = [_figures(figures) | {"date": name} for name, figures in days.items()]
    return UsageReport.model_validate(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            **_figures(total),
            "days": [UsageDay.model_validate(day) for day in per_day],
        }
    )


def _empty() -> dict[str, Any]:
    return {"jobs": {}, **dict.fromkeys(usage.FIGURES, 0.0)}


def _figures(figures: dict[str, Any]) -> dict[str, Any]:
    rounded = {
        k: (int(v) if k in _WHOLE else round(v, 3)) for k, v in figures.items() if k != "jobs"
    }
    return {"jobs": dict(figures["jobs"]), **rounded}


def _day(raw: str, field: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{field}: a date as YYYY-MM-DD", {"field": field}) from None
