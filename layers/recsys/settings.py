"""Configuration from environment variables (one place, validated)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS_ROOT = REPO_ROOT / "model_artifacts"


class Settings(BaseSettings):
    """Everything the service reads from its environment; names are the variable names, case-insensitive."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field("recommendations", min_length=3, max_length=255)
    dynamodb_endpoint_url: str | None = None
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    dynamodb_max_attempts: int = Field(3, ge=1, le=10)
    write_retries: int = Field(5, ge=1, le=20)
    ttl_days: int = Field(90, ge=1)
    default_k: int = Field(20, ge=1)
    max_k: int = Field(100, ge=1)
    max_items: int = Field(500, ge=1)
    artifacts_root: Path = DEFAULT_ARTIFACTS_ROOT
    model_dir: Path | None = None

    def resolved_model_dir(self) -> Path:
        """MODEL_DIR if set, otherwise the version named by <artifacts_root>/CURRENT."""
        if self.model_dir is not None:
            return self.model_dir
        current = self.artifacts_root / "CURRENT"
        return self.artifacts_root / current.read_text().strip()
