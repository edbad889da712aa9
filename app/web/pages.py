"""Browser pages (filled in by the browser application issue)."""

from fastapi import APIRouter

router = APIRouter()
