"""Process-wide objects, built once per container (Lambda reuses them across invocations)."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from fastapi import Depends

from recsys.recommender import Recommender, load_recommender
from recsys.service import RecommendationService
from recsys.settings import Settings
from recsys.store import RecommendationStore


@cache
def get_settings() -> Settings:
    return Settings()


def get_recommender() -> Recommender:
    """The model, loaded on first use (cached by load_recommender)."""
    return load_recommender(get_settings().resolved_model_dir())


@cache
def get_service() -> RecommendationService:
    settings = get_settings()
    return RecommendationService(settings, RecommendationStore(settings), get_recommender)


def reset() -> None:
    """Forget the cached settings and clients (tests change the environment between cases)."""
    get_settings.cache_clear()
    get_service.cache_clear()


async def service_dependency() -> RecommendationService:
    """get_service for FastAPI: async, so that it runs on the event loop, not in a worker thread (see recsys.api)."""
    return get_service()


ServiceDep = Annotated[RecommendationService, Depends(service_dependency)]
