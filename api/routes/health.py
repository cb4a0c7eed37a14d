"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from api.schemas import Health
from db.session import ping

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"description": "SERVICE_UNAVAILABLE: the database or the broker is down"}},
    summary="The database and the broker are reachable",
)
def readyz(request: Request) -> JSONResponse:
    checks = {"database": "ok", "broker": "ok"}
    try:
        ping(request.app.state.engine)
    except SQLAlchemyError:
        checks["database"] = "unavailable"
    if not request.app.state.queue.reachable():
        checks["broker"] = "unavailable"
    if all(value == "ok" for value in checks.values()):
        return JSONResponse(Health(status="ready", checks=checks).model_dump())
    down = ", ".join(name for name, value in checks.items() if value != "ok")
    body = {
        "error": {
            "code": "SERVICE_UNAVAILABLE",
            "message": f"unavailable: {down}",
            "details": {"checks": checks},
        }
    }
    return JSONResponse(body, status_code=503)
