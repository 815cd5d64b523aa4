"""The Salesbricks Usage API schema (GraphQL), exactly as the vendor publishes it.

`incrementCounter` adds to a counter brick (a `sum` meter), `setGauge` sets a gauge brick
(a `prorated` meter). Both go through the one ingest path; a refusal is a GraphQL error whose
`extensions.code` names the reason, and then nothing was written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document
from strawberry.types import ExecutionContext

from meterworks.api.context import AppContext
from meterworks.catalog.meters import Meter, get_meter
from meterworks.errors import MeterworksError, Unavailable
from meterworks.facades.salesbricks.bodies import text_problem
from meterworks.facades.salesbricks.translate import (
    SOURCE,
    BrickCall,
    check_brick_kind,
    first_problem,
    graphql_argument,
    operation_key,
    vendor_code,
)
from meterworks.kit.clock import ensure_utc
from meterworks.usage.ingest import find_meter, kept_meter

log = logging.getLogger("meterworks.facades.salesbricks")

UNAVAILABLE = "SERVICE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class UsageContext:
    """What a resolver knows of its request: the organization and the client's key, if any."""

    app: AppContext
    organization_id: str
    idempotency_key: str | None


@strawberry.type
class IncrementCounterResponse:
    success: bool


@strawberry.type
class SetGaugeResponse:
    success: bool


def _ping() -> bool:
    return True


@strawberry.type
class Query:
    # GraphQL needs a query root; this one reads nothing.
    ping: bool = strawberry.field(
        resolver=_ping, description="Always true: the Usage API is reachable."
    )


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def increment_counter(
        self,
        info: strawberry.Info[UsageContext, None],
        timestamp: datetime,
        subscription_id: str,
        brick_id: str,
        count: int,
    ) -> IncrementCounterResponse:
        await report(
            info.context,
            str(info.path.key),
            BrickCall.INCREMENT_COUNTER,
            timestamp,
            subscription_id,
            brick_id,
            count,
        )
        return IncrementCounterResponse(success=True)

    @strawberry.mutation
    async def set_gauge(
        self,
        info: strawberry.Info[UsageContext, None],
        timestamp: datetime,
        subscription_id: str,
        brick_id: str,
        value: int,
    ) -> SetGaugeResponse:
        await report(
            info.context,
            str(info.path.key),
            BrickCall.SET_GAUGE,
            timestamp,
            subscription_id,
            brick_id,
            value,
        )
        return SetGaugeResponse(success=True)


class UsageSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Refusals are answers, not faults; the HTTP layer logs what it did not expect.
        return None


# Documents each cache remembers: past it, `ParserCache` drops the least recently used one, and
# `_validated` and `direct`'s plans start again empty.
REMEMBERED_DOCUMENTS = 256
_validated: dict[tuple[str, tuple[Any, ...]], list[GraphQLError]] = {}
# The parse of `ParserCache(maxsize=REMEMBERED_DOCUMENTS)`: Strawberry keeps one cache per size,
# so `direct` and the executor parse each document text once between them.
parsed: Callable[[str], DocumentNode] = ParserCache(
    maxsize=REMEMBERED_DOCUMENTS
).cached_parse_document


class _ValidatedByText(SchemaExtension):
    """Validates each distinct document text once, as Strawberry's `ValidationCache` does, but
    finds it by the text the document was parsed from (`ParserCache` gives the same document for
    the same text). `ValidationCache` finds it by the parsed document, whose hash walks the whole
    syntax tree anew on every call: in-process, 621 µs of the loop's CPU an `incrementCounter`
    call against 581 µs so."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None
        assert context.graphql_document is not None
        context.pre_execution_errors = validation_errors(
            context.query, context.graphql_document, context.validation_rules
        )
        yield


def validation_errors(
    query: str, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    """What validating `document`, parsed from `query`, against these rules finds: worked out
    once per text (`_ValidatedByText`, and `direct` where it plans a document)."""
    key = (query, rules)
    errors = _validated.get(key)
    if errors is None:
        errors = validate_document(schema._schema, document, rules)
        if len(_validated) >= REMEMBERED_DOCUMENTS:
            _validated.clear()
        _validated[key] = errors
    return errors


class _Released(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor keeps helpers bound to itself (`async_helpers`), a reference
    cycle: each call's executor, with its variables and results (about 43 objects), waited for
    the garbage collector, whose collections paused every call in flight (5–19 ms). The helpers
    are dropped once the operation has run, and the rest is freed on the spot. Should a later
    graphql-core name them otherwise, nothing is dropped, and the collector frees them as before."""

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        result = super().execute_operation(*args, **kwargs)
        if self.is_awaitable(result):
            return self._released(result)
        self._release()
        return result

    async def _released(self, result: Awaitable[Any]) -> Any:
        try:
            return await result
        finally:
            self._release()

    def _release(self) -> None:
        vars(self).pop("async_helpers", None)


# Clients send the same document with new variables on every call: parsing and validating it
# once per distinct text, not per request, keeps the answers and saves most of GraphQL's cost.
schema = UsageSchema(
    query=Query,
    mutation=Mutation,
    extensions=[lambda: ParserCache(maxsize=REMEMBERED_DOCUMENTS), _ValidatedByText],
    execution_context_class=_Released,
)


def _brick(context: UsageContext, brick_id: str) -> Meter:
    with context.app.db.read() as conn:
        found = find_meter(conn, context.organization_id, brick_id)
        return found or get_meter(conn, context.organization_id, brick_id)


async def report(
    context: UsageContext,
    response_key: str,
    call: BrickCall,
    timestamp: datetime,
    subscription_id: str,
    brick_id: str,
    quantity: int,
) -> None:
    """What a mutation field does, whichever way it runs (the executor, or `direct`):
    `response_key` is the field's name in the answer (its alias, where it has one)."""
    for argument, text in (("subscriptionId", subscription_id), ("brickId", brick_id)):
        problem = text_problem(text)
        if problem is not None:
            raise GraphQLError(problem, extensions={"code": "BAD_USER_INPUT", "argument": argument})
    try:
        instant = ensure_utc(timestamp)
    except OverflowError as exc:
        raise GraphQLError(
            "timestamp is out of range in UTC",
            extensions={"code": "INVALID_TIMESTAMP", "argument": "timestamp"},
        ) from exc
    try:
        # A brick met before is known here: its kind never changes.
        meter = kept_meter(context.organization_id, brick_id)
        if meter is None:
            meter = await asyncio.to_thread(_brick, context, brick_id)
        check_brick_kind(call, meter)
        event = {
            "idempotency_key": operation_key(context.idempotency_key, response_key),
            "subscription_id": subscription_id,
            "meter": meter.id,
            "timestamp": instant,
            "operation": call.operation,
            "quantity": quantity,
        }
        await context.app.usage.record_async(context.organization_id, [event], source=SOURCE)
    except MeterworksError as exc:
        raise usage_error(exc, call) from exc


def usage_error(exc: MeterworksError, call: BrickCall) -> GraphQLError:
    """A domain refusal as a GraphQL error: `extensions.code` in upper snake case."""
    if isinstance(exc, Unavailable):
        return GraphQLError(exc.message, extensions={"code": UNAVAILABLE})
    code, field, message = first_problem(exc.code, exc.details)
    extensions: dict[str, Any] = {"code": vendor_code(code, call).upper()}
    argument = graphql_argument(field, call) if field else None
    if argument is not None:
        extensions["argument"] = argument
    return GraphQLError(message or exc.message, extensions=extensions)
