"""Configuration from environment variables: the one home of every limit and default, validated at init.

A function builds its Settings once, when its handler is made (``load_settings``): an invalid value fails the
function's init with one log line naming the variable, instead of a 500 on every request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS_ROOT = REPO_ROOT / "model_artifacts"


class Settings(BaseSettings):
    """Everything the service reads from its environment; names are the variable names, case-insensitive."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field("recommendations", min_length=3, max_length=255)
    dynamodb_endpoint_url: str | None = Field(None, description="empty or unset: AWS")
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    dynamodb_max_attempts: int = Field(3, ge=1, le=10)
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
    idempotency_table_name: str = Field("recommendations-idempotency", min_length=3, max_length=255)
    idempotency_expiry_seconds: int = Field(
        86_400, ge=60, description="how long a recorded order_id is remembered: redeliveries within it count once"
    )
    artifacts_root: Path = DEFAULT_ARTIFACTS_ROOT
    model_dir: Path | None = None

    @field_validator("dynamodb_endpoint_url", "model_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """The template declares some variables empty by default (``sam local invoke`` sets only declared ones)."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_k > self.max_k:
            raise ValueError(f"DEFAULT_K ({self.default_k}) is larger than MAX_K ({self.max_k})")
        return self

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
