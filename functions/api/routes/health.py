from __future__ import annotations

from fastapi import APIRouter

from functions.api.openapi import ANONYMOUS

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", summary="Liveness check", openapi_extra=ANONYMOUS)
async def health() -> dict[str, str]:
    """Liveness: answers without authentication and without touching storage."""
    return {"status": "ok"}
