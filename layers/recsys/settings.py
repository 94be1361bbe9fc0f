"""Configuration from environment variables: the one home of every limit and default, validated at init.

A function builds its Settings once, when its handler is made (``load_settings``): an invalid value fails the
function's init with one log line naming the variable, instead of a 500 on every request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS_ROOT = REPO_ROOT / "model_artifacts"
BOTOCORE_MAX_BACKOFF = 20.0  # botocore's standard retry mode: its longest back-off, in seconds
WRITE_BACKOFF_MAX = 0.25  # seconds between optimistic-lock write attempts at most, however many WRITE_RETRIES allows


class Settings(BaseSettings):
    """Everything the service reads from its environment; names are the variable names, case-insensitive."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field("recommendations", min_length=3, max_length=255)
    dynamodb_endpoint_url: str | None = Field(None, description="empty or unset: AWS")
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    dynamodb_max_attempts: int = Field(3, ge=1, le=10, description="attempts per DynamoDB call (botocore standard)")
    dynamodb_connect_timeout: float = Field(0.5, gt=0, le=10, description="seconds to connect to DynamoDB, per attempt")
    dynamodb_read_timeout: float = Field(
        0.8, gt=0, le=30, description="seconds to wait for DynamoDB's answer (between bytes), per attempt"
    )
    request_budget_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="time a request may spend, DynamoDB retries included: no DynamoDB attempt starts that could still "
        "run past it (503 instead); with the longest back-off and WRITE_RETRIES' sleep it stays below every "
        "function's Timeout (a test reads template.yaml)",
    )
    write_retries: int = Field(5, ge=1, le=20)
    ttl_days: int = Field(90, ge=1)
    default_k: int = Field(20, ge=1, description="k when a generate request names none")
    max_k: int = Field(100, ge=1, le=1000, description="largest k a generate request may ask for")
    max_items: int = Field(500, ge=1, description="most products one stored list holds")
    max_excluded: int = Field(2000, ge=0, description="most products remembered as excluded per customer")
    max_products_per_request: int = Field(100, ge=1, description="most products one update or delete names")
    max_history_products: int = Field(500, ge=1, description="most distinct products kept in a purchase history")
    max_purchases_per_order: int = Field(100, ge=1, description="most purchases one record_purchases request names")
    max_quantity: int = Field(1_000_000, ge=1, description="largest quantity of one purchase")
    max_future_purchase_seconds: int = Field(
        86_400, ge=0, description="how far in the future a purchased_at may lie (clock skew), in seconds"
    )
    order_memory_seconds: int = Field(
        86_400,
        ge=60,
        description="how long record_purchases remembers an order (in the customer's history item): a redelivery "
        "within it counts once, a later one counts again",
    )
    max_remembered_orders: int = Field(
        100,
        ge=1,
        le=1000,
        description="most orders a customer's history item remembers (the most recent): a redelivery after this many "
        "newer orders counts again. The history item is read and written whole by every order: at worst (500 "
        "products, the longest ids) it is 110 KB with 100 orders, 235 KB with 1000 (tests/unit/test_orders.py), "
        "DynamoDB's limit 400 KB",
    )
    auth_mode: Literal["IAM", "JWT"] = Field(
        "IAM", description="the API's authoriser (template parameter AuthMode); JWT: callers act on their own customer"
    )
    jwt_customer_claim: str = Field("sub", min_length=1, description="JWT mode: the claim naming the caller's customer")
    jwt_admin_scope: str | None = Field(
        None, description="JWT mode: a scope that may act on any customer (empty or unset: none may)"
    )
    artifacts_root: Path = DEFAULT_ARTIFACTS_ROOT
    model_dir: Path | None = None

    @field_validator("dynamodb_endpoint_url", "model_dir", "jwt_admin_scope", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """The template declares some variables empty by default (``sam local invoke`` sets only declared ones)."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_k > self.max_k:
            raise ValueError(f"DEFAULT_K ({self.default_k}) is larger than MAX_K ({self.max_k})")
        if self.request_budget_seconds < self.dynamodb_attempt_seconds:
            raise ValueError(
                f"REQUEST_BUDGET_SECONDS ({self.request_budget_seconds}) is shorter than one DynamoDB attempt "
                f"(DYNAMODB_CONNECT_TIMEOUT + DYNAMODB_READ_TIMEOUT = {self.dynamodb_attempt_seconds})"
            )
        return self

    @property
    def dynamodb_attempt_seconds(self) -> float:
        """The longest one DynamoDB attempt can take: connect, then wait for the answer."""
        return self.dynamodb_connect_timeout + self.dynamodb_read_timeout

    def dynamodb_backoffs(self) -> list[float]:
        """The longest sleep botocore's standard mode makes before each retry: rand(0, 1) * min(2^i s, 20 s) for
        throttling (other errors back off less; DynamoDB sends no x-amz-retry-after)."""
        return [min(2.0**i, BOTOCORE_MAX_BACKOFF) for i in range(self.dynamodb_max_attempts - 1)]

    def dynamodb_call_seconds(self) -> float:
        """The longest one DynamoDB call can take, budget aside: every attempt timing out, every back-off at most."""
        return self.dynamodb_max_attempts * self.dynamodb_attempt_seconds + sum(self.dynamodb_backoffs())

    def request_seconds(self) -> float:
        """The longest a request's DynamoDB work can take: attempts start only while one fits in the budget, and at
        most one back-off (botocore's, or the optimistic lock's) may fall after the deadline."""
        return self.request_budget_seconds + max([WRITE_BACKOFF_MAX, *self.dynamodb_backoffs()])

    def resolved_model_dir(self) -> Path:
        """MODEL_DIR if set, otherwise the version named by <artifacts_root>/CURRENT."""
        if self.model_dir is not None:
            return self.model_dir
        current = self.artifacts_root / "CURRENT"
        return self.artifacts_root / current.read_text().strip()


def load_settings() -> Settings:
    """Settings from the environment, or a ConfigurationError naming each invalid variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{str(e['loc'][0]).upper() if e['loc'] else 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"Invalid configuration: {problems}") from None
