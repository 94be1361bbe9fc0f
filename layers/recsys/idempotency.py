"""record_purchases' order ledger: Powertools' idempotency utility on the idempotency table (DynamoDB).

Only record_purchases imports this module (``recsys.service.default_service`` imports it on that operation's first
request), so the other functions never load the utility.

An order is identified by (customer_id, order_id): the same order_id for another customer is another order. The
first delivery runs and its answer is kept for IDEMPOTENCY_EXPIRY_SECONDS; a redelivery within that time gets the
same answer and writes nothing. A delivery of a known order with other purchases or another country is refused
(409), as is a delivery arriving while the first is still being recorded (409 with Retry-After). A recording that
fails (503, 409 after lost races) leaves no record behind, so the client's retry runs afresh.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from recsys.errors import ConflictError, UnavailableError
from recsys.observability import logger
from recsys.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ORDER_KEY = "[customer_id, order_id]"  # JMESPath over the order: the idempotency key (hashed)
ORDER_PAYLOAD = "[purchases, country]"  # what a redelivery must repeat (hashed and compared)
KEY_PREFIX = "record_purchases"  # instead of the function's name: the key survives renaming the function
IN_PROGRESS_RETRY_AFTER = 2  # seconds: a recording takes milliseconds, unless its Lambda died mid-way

# Without a Lambda context (the local server) an in-progress record simply lasts until it expires; Powertools warns
# about that on every order
warnings.filterwarnings("ignore", message="Couldn't determine the remaining time left", category=UserWarning)


class OrderInProgressError(ConflictError):
    """The same order is being recorded by another delivery right now."""

    code = "order_in_progress"

    def __init__(self, message: str, details: Any = None, retry_after: int = IN_PROGRESS_RETRY_AFTER) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class OrderMismatchError(ConflictError):
    """The order_id was recorded before with other purchases."""

    code = "order_mismatch"


class DynamoDBLedger:
    """Runs each order once, remembering it in the table IDEMPOTENCY_TABLE_NAME (key ``id``, TTL ``expiration``)."""

    def __init__(self, settings: Settings, client: DynamoDBClient) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath=ORDER_KEY,
            payload_validation_jmespath=ORDER_PAYLOAD,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.idempotency_expiry_seconds,
        )
        persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name, boto3_client=client)
        self._once = idempotent_function(
            data_keyword_argument="order", persistence_store=persistence, config=self.config, key_prefix=KEY_PREFIX
        )(_run)

    def once(
        self, order: dict[str, Any], record: Callable[[], dict[str, Any]], lambda_context: Any = None
    ) -> dict[str, Any]:
        if lambda_context is not None:  # an in-progress record then expires with the invocation, not after a day
            self.config.register_lambda_context(lambda_context)
        details = {"order_id": order.get("order_id")}
        try:
            answer: dict[str, Any] = self._once(order=order, record=record)
        except IdempotencyValidationError as error:
            raise OrderMismatchError(
                "This order_id was recorded before with other purchases; use a new order_id for a new order", details
            ) from error
        except (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError) as error:
            # in progress; or (inconsistent state) its record expired or was deleted between Powertools' put and read
            raise OrderInProgressError("This order is being recorded right now; retry shortly", details) from error
        except IdempotencyPersistenceLayerError as error:
            logger.warning("Idempotency table call failed: %s", error.__cause__ or error)
            raise UnavailableError("The order ledger is not available; retry shortly") from error
        return answer


def _run(order: dict[str, Any], record: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The idempotent function: ``order`` is what Powertools hashes, ``record`` what it runs the first time."""
    return record()
