"""The /api/v1 router: every JSON route of the service."""

from fastapi import APIRouter

from app.api.routes import auth, images, labels, models, predict, suggestions, training_jobs, users

api_router = APIRouter()
for module in (auth, users, images, labels, predict, models, training_jobs, suggestions):
    api_router.include_router(module.router)
