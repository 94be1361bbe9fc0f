"""DynamoDB persistence of recommendation lists: the only module that touches boto3.

One item per customer (partition key ``customer_id``). Every write is conditional on the ``version`` attribute
(optimistic locking); the caller retries on :class:`VersionConflict`. Throttling and outages surface as
:class:`UnavailableError` after botocore's ``standard`` retries.

The list itself is one string attribute, ``items``: a JSON array of {product_id, score, source, name?}, best first.
The list is only ever read and written whole, and as one attribute it costs (de)serialising one value instead of
four per product, in botocore and in moto (whose serialiser made a 20-product GetItem take ~16 ms); JSON keeps the
float scores exact, with no Decimal round trip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from recsys.domain import Recommendation, RecommendationList
from recsys.errors import UnavailableError, VersionConflict
from recsys.observability import logger
from recsys.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_item(stored: RecommendationList, expires_at: datetime) -> dict[str, Any]:
    items = [
        {"product_id": i.product_id, "score": i.score, "source": i.source} | ({"name": i.name} if i.name else {})
        for i in stored.items
    ]
    item: dict[str, Any] = {
        "customer_id": stored.customer_id,
        "items": json.dumps(items, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        "created_at": stored.created_at.isoformat(),
        "updated_at": stored.updated_at.isoformat(),
        "version": stored.version,
        "expires_at": int(expires_at.timestamp()),
    }
    if stored.excluded:  # DynamoDB has no empty sets
        item["excluded"] = set(stored.excluded)
    if stored.model_version:
        item["model_version"] = stored.model_version
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _from_item(raw: dict[str, Any]) -> RecommendationList:
    item = {key: _deserializer.deserialize(value) for key, value in raw.items()}
    return RecommendationList(
        customer_id=item["customer_id"],
        items=tuple(
            Recommendation(i["product_id"], float(i["score"]), i["source"], i.get("name"))
            for i in json.loads(item["items"])
        ),
        excluded=frozenset(item.get("excluded", ())),
        model_version=item.get("model_version"),
        created_at=datetime.fromisoformat(item["created_at"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
        version=int(item["version"]),
    )


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    """A DynamoDB client with the service's endpoint, retries and timeouts (benchmarks pass one they observe)."""
    client: DynamoDBClient = boto3.client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint_url,
        config=Config(
            # total_max_attempts counts the first attempt too; botocore's max_attempts would count only retries
            retries={"mode": "standard", "total_max_attempts": settings.dynamodb_max_attempts},
            connect_timeout=2,
            read_timeout=5,
        ),
    )
    return client


class DynamoDBStore:
    """The customers' lists in the table ``settings.table_name``."""

    def __init__(self, settings: Settings, client: DynamoDBClient | None = None) -> None:
        self.table_name = settings.table_name
        self.ttl = timedelta(days=settings.ttl_days)
        self._client = client or dynamodb_client(settings)

    def create_table(self, definition: Mapping[str, Any]) -> None:
        """Create the table from a template's ``AWS::DynamoDB::Table`` properties (key schema, billing mode, TTL):
        for local stacks and tests, so they use exactly what is deployed."""
        self._client.create_table(
            TableName=self.table_name,
            KeySchema=definition["KeySchema"],
            AttributeDefinitions=definition["AttributeDefinitions"],
            BillingMode=definition["BillingMode"],
        )
        ttl = definition.get("TimeToLiveSpecification")
        if ttl:
            self._client.update_time_to_live(TableName=self.table_name, TimeToLiveSpecification=ttl)

    def get(self, customer_id: str) -> RecommendationList | None:
        """The customer's list as last written (strongly consistent), or None."""
        response = self._call(
            "get_item", TableName=self.table_name, Key={"customer_id": {"S": customer_id}}, ConsistentRead=True
        )
        return _from_item(response["Item"]) if "Item" in response else None

    def put(self, stored: RecommendationList) -> RecommendationList:
        """Write ``stored`` as the next version if the stored version is still ``stored.version``.

        Raises VersionConflict when another writer got there first.
        """
        new = stored.evolve(version=stored.version + 1, updated_at=datetime.now(UTC))
        if stored.version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(customer_id)"}
        else:
            condition = {
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(stored.version)}},
            }
        self._call("put_item", TableName=self.table_name, Item=_to_item(new, new.updated_at + self.ttl), **condition)
        return new

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise VersionConflict from error
            if code == "ResourceNotFoundException":
                logger.error("DynamoDB table %r not found: check TABLE_NAME and the region/endpoint", self.table_name)
                raise UnavailableError("The recommendation store is not available", retry_after=30) from error
            if code in UNAVAILABLE_CODES:
                logger.warning("DynamoDB %s failed after retries: %s", operation, code)
                raise UnavailableError("The recommendation store is busy; retry shortly") from error
            raise
        except BotoCoreError as error:
            logger.error("DynamoDB %s failed: %s", operation, error)
            raise UnavailableError("The recommendation store is not reachable") from error
