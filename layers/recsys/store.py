"""DynamoDB persistence of recommendation lists and purchase histories: the only module that touches boto3.

Two items per customer under the partition key ``customer_id``, told apart by the sort key ``record``: ``list`` (the
recommendations) and ``history`` (the purchases). One Query on the customer can read both; as separate items, a
purchase being recorded never contends with a list being written. Every write is conditional on the item's
``version`` attribute (optimistic locking); the caller retries on :class:`VersionConflict`. Throttling and outages
surface as :class:`UnavailableError` after botocore's ``standard`` retries, and so does a request whose time budget
(``recsys.budget``) has no room for another attempt.

The list itself is one string attribute, ``items``: a JSON array of {product_id, score, source, name?}, best first.
The list is only ever read and written whole, and as one attribute it costs (de)serialising one value instead of
four per product, in botocore and in moto (whose serialiser made a 20-product GetItem take ~16 ms); JSON keeps the
float scores exact, with no Decimal round trip. The exclusions, ``excluded``, are a JSON array string too, oldest
first (older items hold a string set, still read). A history item is its key, ``version``, ``expires_at`` and one JSON
string attribute, ``history``, holding everything else: the products, the country, the time of the last write and the
orders it remembers (see ``history_document``): five attributes instead of the eight it had before (products and
orders as two JSON strings, country, updated_at), which are still read; moto's serialiser walks every attribute of a
GetItem's answer (~0.07 ms each here), botocore parses each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from recsys import budget
from recsys.domain import (
    HALF_LIVES_DAYS,
    ProductHistory,
    PurchaseHistory,
    Recommendation,
    RecommendationList,
    RecordedOrder,
    from_micros,
    to_micros,
)
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
LIST, HISTORY = "list", "history"  # the sort key ``record`` of a customer's two items
# botocore's check of every request against DynamoDB's API model (types, required members, lengths): off, as every
# request is built here, from input the API validated, and DynamoDB checks it again (an invalid one is its
# ValidationException instead of botocore's ParamValidationError). It cost ~0.08 ms a call, two calls an order. The
# tests turn it on (tests/conftest.py), so a request the model would refuse still fails them under moto.
VALIDATE_PARAMETERS = False
# what batch generation's Scan reads of a history item: the key, the document and the version; ``products``, ``country``
# and ``updated_at`` hold them in items written before the document (their ``orders`` are not read)
HISTORY_ATTRIBUTES = ("customer_id", "history", "version", "products", "country", "updated_at")


def _key(customer_id: str, record: str) -> dict[str, Any]:
    return {"customer_id": {"S": customer_id}, "record": {"S": record}}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _to_item(stored: RecommendationList, expires_at: datetime) -> dict[str, Any]:
    items = [
        {"product_id": i.product_id, "score": i.score, "source": i.source} | ({"name": i.name} if i.name else {})
        for i in stored.items
    ]
    item: dict[str, Any] = {
        "customer_id": stored.customer_id,
        "record": LIST,
        "items": _json(items),
        "created_at": stored.created_at.isoformat(),
        "updated_at": stored.updated_at.isoformat(),
        "version": stored.version,
        "expires_at": int(expires_at.timestamp()),
    }
    if stored.excluded:
        item["excluded"] = _json(list(stored.excluded))  # oldest first: the order decides what is forgotten
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
        excluded=_excluded(item.get("excluded")),
        model_version=item.get("model_version"),
        created_at=datetime.fromisoformat(item["created_at"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
        version=int(item["version"]),
    )


def _excluded(value: Any) -> tuple[str, ...]:
    """The stored exclusions, oldest first: a JSON array string; lists written before the order was kept hold a
    string set (order unknown: read sorted, so they are forgotten in a stable order)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(json.loads(value))
    return tuple(sorted(value))


def product_rows(products: Mapping[str, ProductHistory]) -> dict[str, list[int | float]]:
    """{product_id: [purchases, quantity, last purchase, ref, decayed count per half-life in HALF_LIVES_DAYS...]}: a
    ProductHistory's fields in order, times in epoch seconds, the decayed counts as of ref. Arrays, as every order
    reads and writes them all: a third smaller than objects naming each figure, and faster to encode and decode."""
    return {pid: list(p) for pid, p in products.items()}


def history_document(history: PurchaseHistory) -> str:
    """The ``history`` attribute: {"products": ``product_rows``, "updated_at": epoch microseconds, "country"?,
    "orders"?: [[order_id, payload hash, purchases recorded, products in history, version, recorded at (epoch
    microseconds: the history's updated_at then)]], oldest first}; country and orders absent while there are none."""
    document: dict[str, Any] = {
        "products": product_rows(history.products),
        "updated_at": to_micros(history.updated_at),
    }
    if history.country:
        document["country"] = history.country
    if history.orders:
        document["orders"] = history.orders  # named tuples: arrays
    return _json(document)


def _history_to_item(history: PurchaseHistory, expires_at: datetime) -> dict[str, Any]:
    return {  # the wire form directly: boto3's TypeSerializer would only add work
        "customer_id": {"S": history.customer_id},
        "record": {"S": HISTORY},
        "history": {"S": history_document(history)},
        "version": {"N": str(history.version)},
        "expires_at": {"N": str(int(expires_at.timestamp()))},
    }


def _history_from_item(raw: dict[str, Any], *, orders: bool = True) -> PurchaseHistory:
    """The history an item holds (its orders left out with ``orders=False``), in either layout."""
    if "history" not in raw:
        return _history_from_item_before_document(raw)  # the Scan does not project its ``orders``
    document = json.loads(raw["history"]["S"])
    return PurchaseHistory(
        customer_id=raw["customer_id"]["S"],
        products={product_id: ProductHistory._make(row) for product_id, row in document["products"].items()},
        country=document.get("country"),
        updated_at=from_micros(document["updated_at"]),
        version=int(raw["version"]["N"]),
        orders=tuple(map(RecordedOrder._make, document.get("orders", ()))) if orders else (),
    )


def _history_from_item_before_document(raw: dict[str, Any]) -> PurchaseHistory:
    """An item written before the ``history`` document: ``products`` a JSON string of {product_id: {n, q, t, d<h>,
    ref}}, ``orders`` one of the orders' arrays (absent while there were none), ``country``, ``updated_at`` (ISO 8601)
    and ``version`` attributes of their own."""
    item = {key: _deserializer.deserialize(value) for key, value in raw.items()}
    products = {
        product_id: ProductHistory(
            int(p["n"]), int(p["q"]), int(p["t"]), int(p["ref"]), *(float(p[f"d{h}"]) for h in HALF_LIVES_DAYS)
        )
        for product_id, p in json.loads(item["products"]).items()
    }
    return PurchaseHistory(
        customer_id=item["customer_id"],
        products=products,
        country=item.get("country"),
        updated_at=datetime.fromisoformat(item["updated_at"]),
        version=int(item["version"]),
        orders=tuple(map(RecordedOrder._make, json.loads(item["orders"]))) if "orders" in item else (),
    )


def create_table(client: DynamoDBClient, table_name: str, definition: Mapping[str, Any]) -> None:
    """Create a table from a template's ``AWS::DynamoDB::Table`` properties (key schema, billing mode, TTL): for local
    stacks and tests, so they use exactly what is deployed."""
    client.create_table(
        TableName=table_name,
        KeySchema=definition["KeySchema"],
        AttributeDefinitions=definition["AttributeDefinitions"],
        BillingMode=definition["BillingMode"],
    )
    ttl = definition.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)


def _condition(version: int) -> dict[str, Any]:
    """A write of the item's next version: only if there is none yet (version 0) or it is still ``version``."""
    if version == 0:  # evaluated on the item with the write's full key (customer_id + record)
        return {"ConditionExpression": "attribute_not_exists(customer_id)"}
    return {
        "ConditionExpression": "#v = :expected",
        "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":expected": {"N": str(version)}},
    }


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    """A DynamoDB client with the service's endpoint, retries and timeouts (benchmarks pass one they observe)."""
    client: DynamoDBClient = boto3.client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint_url,
        config=Config(
            # total_max_attempts counts the first attempt too; botocore's max_attempts would count only retries
            retries={"mode": "standard", "total_max_attempts": settings.dynamodb_max_attempts},
            connect_timeout=settings.dynamodb_connect_timeout,
            read_timeout=settings.dynamodb_read_timeout,
            parameter_validation=VALIDATE_PARAMETERS,
        ),
    )
    # before every attempt, botocore's retries included: none starts that could still run at the request's deadline
    attempt = settings.dynamodb_attempt_seconds
    client.meta.events.register("before-send.dynamodb", lambda **_: budget.check(attempt))
    return client


class DynamoDBStore:
    """The customers' lists in the table ``settings.table_name``."""

    def __init__(self, settings: Settings, client: DynamoDBClient | None = None) -> None:
        self.table_name = settings.table_name
        self.ttl = timedelta(days=settings.ttl_days)
        self.client = client or dynamodb_client(settings)

    def get(self, customer_id: str) -> RecommendationList | None:
        """The customer's list as last written (strongly consistent), or None."""
        raw = self._get(customer_id, LIST)
        return _from_item(raw) if raw is not None else None

    def get_history(self, customer_id: str) -> PurchaseHistory | None:
        """The customer's purchase history as last written (strongly consistent), or None."""
        raw = self._get(customer_id, HISTORY)
        return _history_from_item(raw) if raw is not None else None

    def histories(self, segment: int = 0, total_segments: int = 1) -> Iterator[PurchaseHistory]:
        """Every customer's purchase history in segment ``segment`` of a parallel Scan in ``total_segments``
        (batch generation): the history items only (a filter on the sort key), their attributes only (a projection),
        page by page, without the orders they remember (write none of them back; the ``history`` document holds
        them, so they are read, but not kept). Eventually consistent: a purchase recorded in the last second may be
        missed."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Segment": segment,
            "TotalSegments": total_segments,
            "FilterExpression": "#record = :history",
            "ProjectionExpression": ", ".join(f"#{name}" for name in HISTORY_ATTRIBUTES),
            "ExpressionAttributeNames": {f"#{name}": name for name in ("record", *HISTORY_ATTRIBUTES)},
            "ExpressionAttributeValues": {":history": {"S": HISTORY}},
        }
        for page in self._pages("scan", request):
            yield from (_history_from_item(raw) for raw in page.get("Items", ()))

    def get_with_history(self, customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        """The customer's list and purchase history as last written (each None when absent), in one strongly
        consistent Query on the partition key: one request instead of two GetItems (what generate and update need)."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "customer_id = :c",
            "ExpressionAttributeValues": {":c": {"S": customer_id}},
            "ConsistentRead": True,
        }
        # both items fit one page (1 MB) many times over; follow the pages all the same
        found = {item["record"]["S"]: item for page in self._pages("query", request) for item in page.get("Items", ())}
        stored, history = found.get(LIST), found.get(HISTORY)
        return (
            _from_item(stored) if stored is not None else None,
            _history_from_item(history) if history is not None else None,
        )

    def _pages(self, operation: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The pages of a Query or Scan, following LastEvaluatedKey."""
        while True:
            page: dict[str, Any] = self._call(operation, **request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def put(self, stored: RecommendationList) -> RecommendationList:
        """Write ``stored`` as the next version if the stored version is still ``stored.version``.

        Raises VersionConflict when another writer got there first.
        """
        new = stored.evolve(version=stored.version + 1, updated_at=datetime.now(UTC))
        self._put(_to_item(new, new.updated_at + self.ttl), stored.version)
        return new

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        """Write ``history`` as its next version if the stored version is still ``history.version``, as ``put``, with
        its own ``updated_at`` (record_purchases sets it: the order it remembers answers with it)."""
        new = history.evolve(version=history.version + 1)
        self._put(_history_to_item(new, new.updated_at + self.ttl), history.version)
        return new

    def _get(self, customer_id: str, record: str) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table_name, Key=_key(customer_id, record), ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _put(self, item: dict[str, Any], version: int) -> None:
        self._call("put_item", TableName=self.table_name, Item=item, **_condition(version))

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
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
        except budget.BudgetExhausted as error:
            logger.warning("DynamoDB %s not attempted: %s", operation, error)
            raise UnavailableError("The recommendation store did not answer in time; retry shortly") from error
        except BotoCoreError as error:
            logger.error("DynamoDB %s failed: %s", operation, error)
            raise UnavailableError("The recommendation store is not reachable") from error
