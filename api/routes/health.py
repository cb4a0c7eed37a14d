"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from db.session import ping
from scenecap.core.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    ServiceUnavailable,
    StoreUnavailable,
)
from scenecap.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


# The code a 503 carries when one dependency is down (several: SERVICE_UNAVAILABLE).
_DOWN = {
    "database": DatabaseUnavailable.code,
    "broker": BrokerUnavailable.code,
    "store": StoreUnavailable.code,
}


@router.get(
    "/readyz",
    response_model=Health,
    responses={
        503: {
            "description": "DATABASE_UNAVAILABLE, BROKER_UNAVAILABLE, STORE_UNAVAILABLE, "
            "or SERVICE_UNAVAILABLE when more than one is down"
        }
    },
    summary="The database, the broker and the media store are reachable",
)
def readyz(request: Request) -> JSONResponse:
    checks = {"database": "ok", "broker": "ok", "store": "ok"}
    try:
        ping(request.app.state.engine)
    except SQLAlchemyError:
        checks["database"] = "unavailable"
    if not request.app.state.queue.reachable():
        checks["broker"] = "unavailable"
    try:
        request.app.state.store.ping()
    except StoreUnavailable:
        checks["store"] = "unavailable"
    down = [name for name, value in checks.items() if value != "ok"]
    if not down:
        return JSONResponse(Health(status="ready", checks=checks).model_dump())
    body = {
        "error": {
            "code": _DOWN[down[0]] if len(down) == 1 else ServiceUnavailable.code,
            "message": f"unavailable: {', '.join(down)}",
            "details": {"checks": checks},
        }
    }
    return JSONResponse(body, status_code=503)
