"""Request and response models: the API contract, with tight limits on ids and list sizes.

The list sizes come from the settings: ``request_models(settings)`` builds the request bodies with them. Responses are
read straight from the domain objects (``from_attributes``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

from recsys.domain import Source
from recsys.settings import Settings

# Ids: letters, digits and . _ : - ; start with a letter or digit; at most 64 characters.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
ID_MAX_LENGTH = 64
MAX_SCORE = 1e9  # scores are relevance values; the bound keeps them within DynamoDB's number range
MIN_SCORE_MAGNITUDE = 1e-100

CustomerIdPath = Annotated[
    str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="Letters, digits and . _ : - (<= 64)")
]
ProductId = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]


class _Strict(BaseModel):
    """Request bodies: no unknown fields, no coercion (``false`` or ``"1"`` is not a score), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _reject_duplicates(ids: list[str]) -> None:
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate product ids: {', '.join(duplicates)}")


def _storable(score: float) -> float:
    """DynamoDB numbers have magnitudes from 1e-130: smaller ones are stored as 0 (they rank the same)."""
    return score if abs(score) >= MIN_SCORE_MAGNITUDE else 0.0


Score = Annotated[float, Field(ge=-MAX_SCORE, le=MAX_SCORE), AfterValidator(_storable)]


class ProductInput(_Strict):
    product_id: ProductId
    score: Score | None = Field(None, description="Leave out to have the model score the product for this customer")


class UpdateRequest(_Strict):
    products: list[ProductInput] = Field(min_length=1)

    @field_validator("products")
    @classmethod
    def _unique(cls, products: list[ProductInput]) -> list[ProductInput]:
        _reject_duplicates([p.product_id for p in products])
        return products


class DeleteRequest(_Strict):
    product_ids: list[ProductId] = Field(min_length=1)

    @field_validator("product_ids")
    @classmethod
    def _unique(cls, product_ids: list[str]) -> list[str]:
        _reject_duplicates(product_ids)
        return product_ids


@dataclass(frozen=True)
class RequestModels:
    update: type[UpdateRequest]
    delete: type[DeleteRequest]


def request_models(settings: Settings) -> RequestModels:
    """The request bodies with the configured list limits (subclasses under the same names, for the OpenAPI)."""
    limit = settings.max_products_per_request
    return RequestModels(
        update=create_model(
            "UpdateRequest",
            __base__=UpdateRequest,
            products=(list[ProductInput], Field(min_length=1, max_length=limit)),
        ),
        delete=create_model(
            "DeleteRequest",
            __base__=DeleteRequest,
            product_ids=(list[ProductId], Field(min_length=1, max_length=limit)),
        ),
    )


class Item(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: str
    score: float
    source: Source
    name: str | None = None


class RecommendationList(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    items: list[Item]
    model_version: str | None
    updated_at: datetime
    version: int = Field(ge=1, description="Incremented by every write")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
