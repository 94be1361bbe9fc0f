"""Request and response models: the API contract, with tight limits on ids and list sizes.

The list sizes come from the settings: ``request_models(settings)`` builds the request bodies with them. Responses are
read straight from the domain objects (``from_attributes``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
    field_validator,
)

from recsys.domain import Source, utc_now
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


def _text_only(value: Any) -> Any:
    """purchased_at is an ISO 8601 string: not a number of seconds (lax datetime parsing would take one)."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string with a time zone")
    return value


# an ISO 8601 date-time with a time zone (JSON has no date type: parsed from its string, the one lax field)
PurchasedAt = Annotated[AwareDatetime, Strict(False), BeforeValidator(_text_only)]
Country = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")]


class PurchaseInput(_Strict):
    product_id: ProductId = Field(description="Any id: products the model does not know yet are recorded too")
    quantity: int = Field(1, ge=1)
    purchased_at: PurchasedAt | None = Field(None, description="ISO 8601 with a time zone; default: now")


class RecordPurchasesRequest(_Strict):
    order_id: str = Field(
        pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="Deliveries of the same order are counted once"
    )
    purchases: list[PurchaseInput] = Field(min_length=1)
    country: Country | None = Field(None, description="The customer's country, kept for the model's query tower")


@dataclass(frozen=True)
class RequestModels:
    update: type[UpdateRequest]
    delete: type[DeleteRequest]
    record_purchases: type[RecordPurchasesRequest]


def _purchase_model(settings: Settings) -> type[PurchaseInput]:
    """PurchaseInput with the configured quantity bound and no purchase time beyond now + the allowed clock skew."""
    skew = timedelta(seconds=settings.max_future_purchase_seconds)

    def not_in_the_future(value: datetime | None) -> datetime | None:
        if value is not None and value > utc_now() + skew:
            raise ValueError(
                f"purchased_at lies more than {settings.max_future_purchase_seconds} s in the future (the allowed "
                "clock skew)"
            )
        return value

    return create_model(
        "PurchaseInput",
        __base__=PurchaseInput,
        quantity=(int, Field(1, ge=1, le=settings.max_quantity)),
        purchased_at=(
            Annotated[PurchasedAt | None, AfterValidator(not_in_the_future)],
            Field(None, description="ISO 8601 with a time zone; default: now"),
        ),
    )


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
        record_purchases=create_model(
            "RecordPurchasesRequest",
            __base__=RecordPurchasesRequest,
            purchases=(
                list[_purchase_model(settings)],  # type: ignore[misc]
                Field(min_length=1, max_length=settings.max_purchases_per_order),
            ),
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


class RecordedPurchases(BaseModel):
    """What record_purchases answers; a redelivered order gets the first delivery's answer."""

    customer_id: str
    order_id: str
    purchases_recorded: int = Field(description="Purchases this order added to the history")
    products_in_history: int = Field(description="Distinct products the customer's history now holds")
    version: int = Field(ge=1, description="The history's version after this order; incremented by every write")
    updated_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(
        description="Always present, {} when there is nothing more to say; a validation error's: the first 10 "
        "problems {location, message, type} as errors and error_count"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail
