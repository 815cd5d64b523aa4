"""Usage API documents run without the GraphQL executor (`facades/salesbricks/direct.py`) are
answered exactly as the executor answers them, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.facades.salesbricks.support import (
    IDEMPOTENCY_HEADER,
    Company,
    at,
    company,
    ledger_rows,
    native_quantity,
)
from tests.facades.salesbricks.test_graphql import (
    INCREMENT,
    SET_GAUGE,
    USAGE,
    increment_variables,
)
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

WHEN = "2025-01-10T00:00:00Z"


def _literal(sb: Company, field: str, brick: str, quantity: str) -> str:
    return (
        f'{field}(timestamp: "{WHEN}", subscriptionId: "{sb.subscription_id}", '
        f'brickId: "{brick}", {quantity})'
    )


def cases(sb: Company) -> list[tuple[str, dict[str, Any], dict[str, str], bool]]:
    """(name, body, headers, run without the executor?) for every kind of call. `{}` in a
    header becomes the way the call runs, so that each way has keys of its own."""
    good = increment_variables(sb, WHEN, 2)

    def inc(**changes: Any) -> dict[str, Any]:
        """INCREMENT with these variables changed (`...`: left out)."""
        variables = {**good, **changes}
        return {
            "query": INCREMENT,
            "variables": {k: v for k, v in variables.items() if v is not ...},
        }

    gauge = {**good, "brickId": sb.gauge_id, "value": 3}
    del gauge["count"]
    counter_literal = _literal(sb, "incrementCounter", sb.counter_id, "count: 3")
    two = f"query Ping {{ ping }} mutation Inc {{ {counter_literal} {{ success }} }}"
    defaulted = INCREMENT.replace("$count: Int!", "$count: Int! = 4")
    keyed = {IDEMPOTENCY_HEADER: "key-{}"}
    selections = "ok: success __typename success"
    skipped = "success @skip(if: true) __typename"
    twice = f"mutation {{ a: {counter_literal} {{ success }} b: {counter_literal} {{ success }} }}"
    return [
        ("increment", inc(), {}, True),
        ("gauge", {"query": SET_GAUGE, "variables": gauge}, {}, True),
        (
            "aliases and literals",
            {"query": f"mutation {{ first: {counter_literal} {{ {selections} }} }}"},
            {},
            True,
        ),
        (
            "type name only",
            {"query": SET_GAUGE.replace("success", "__typename"), "variables": gauge},
            {},
            True,
        ),
        ("named among two", {"query": two, "operationName": "Inc"}, {}, True),
        ("no operation so named", {"query": two, "operationName": "Nope"}, {}, False),
        ("two and none named", {"query": two}, {}, False),
        ("a default value", inc(count=...) | {"query": defaulted}, {}, True),
        ("an extra variable", inc(other=1), {}, True),
        ("count as text", inc(count="3"), {}, False),
        ("count a whole number with a point", inc(count=3.0), {}, True),
        ("count with a fraction", inc(count=1.5), {}, False),
        ("count past 32 bits", inc(count=2**31), {}, False),
        ("count a boolean", inc(count=True), {}, False),
        ("count null", inc(count=None), {}, False),
        ("count missing", inc(count=...), {}, False),
        ("timestamp not a time", inc(timestamp="yesterday"), {}, False),
        ("timestamp a number", inc(timestamp=12345), {}, False),
        ("subscription a number", inc(subscriptionId=7), {}, False),
        ("negative count", inc(count=-1), {}, True),
        ("unknown brick", inc(brickId="mtr_unknown"), {}, True),
        ("wrong brick kind", inc(brickId=sb.gauge_id), {}, True),
        ("unknown subscription", inc(subscriptionId="sub_nope"), {}, True),
        ("in the future", inc(timestamp="2025-01-21T00:00:00Z"), {}, True),
        ("before the subscription", inc(timestamp="2024-12-31T00:00:00Z"), {}, True),
        ("an empty brick", inc(brickId=""), {}, True),
        ("out of range in UTC", inc(timestamp="0001-01-01T00:00:00+01:00"), {}, True),
        ("with a client key", inc(), keyed, True),
        (
            "with a client key and an alias",
            {"query": INCREMENT.replace("incrementCounter(", "counted: incrementCounter(")}
            | {"variables": good},
            {IDEMPOTENCY_HEADER: "aliased-{}"},
            True,
        ),
        (
            "two mutations",
            {"query": twice},
            {},
            False,
        ),
        ("the query root", {"query": "{ ping }"}, {}, False),
        (
            "a fragment",
            {
                "query": f"mutation {{ {counter_literal} {{ ...F }} }}"
                " fragment F on IncrementCounterResponse { success }"
            },
            {},
            False,
        ),
        (
            "a directive",
            {"query": INCREMENT.replace("success", skipped), "variables": good},
            {},
            False,
        ),
        (
            "a nullable variable",
            {"query": INCREMENT.replace("$count: Int!", "$count: Int"), "variables": good},
            {},
            False,
        ),
    ]  # fmt: skip


def test_every_call_is_answered_as_the_executor_answers_it(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterworks.facades.salesbricks import direct

    ran: list[str] = []
    report = direct.report

    async def counted(context: Any, response_key: str, *args: Any) -> None:
        ran.append(response_key)
        await report(context, response_key, *args)

    monkeypatch.setattr(direct, "report", counted)
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        answers: dict[str, list[tuple[int, str, str | None]]] = {}
        ran_directly: list[str] = []
        for way in ("direct", "executor"):
            if way == "executor":  # every document through the executor now
                monkeypatch.setattr(direct, "_plan_of", lambda query, name: None)
            for name, body, headers, _ in cases(sb):
                before = len(ran)
                response = sb.client.post(
                    USAGE,
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"}
                    | {k: v.replace("{}", way) for k, v in headers.items()},
                )
                answers.setdefault(name, []).append(
                    (
                        response.status_code,
                        response.text,
                        response.headers.get("idempotent-replayed"),
                    )
                )
                if len(ran) > before:
                    ran_directly.append(name)
            if way == "direct":
                written = ledger_rows(server, org.id)
                counted_so_far = native_quantity(
                    org, sb.subscription_id, sb.counter_id, "2025-01-15T00:00:00Z"
                )
        for name, (directly, through_executor) in answers.items():
            assert directly == through_executor, name
        # The executor's round ran nothing directly; the direct round, exactly the plain
        # single-field documents whose variables coerce.
        assert ran_directly == [name for name, _, _, plain in cases(sb) if plain]
        assert written > 0
        assert ledger_rows(server, org.id) == 2 * written
        total = native_quantity(org, sb.subscription_id, sb.counter_id, "2025-01-15T00:00:00Z")
        assert int(total) == 2 * int(counted_so_far)
    statuses = {name: pair[0][0] for name, pair in answers.items()}
    assert statuses["increment"] == 200
    assert statuses["count as text"] == 400
    assert '"success":true' in answers["increment"][0][1]
    assert (
        '"ok":true,"__typename":"IncrementCounterResponse"' in answers["aliases and literals"][0][1]
    )
    assert '"code":"BRICK_NOT_FOUND"' in answers["unknown brick"][0][1]
    assert '"path":["counted"]' not in answers["with a client key and an alias"][0][1]


def test_scalar_variables_are_coerced_as_graphql_core_coerces_them() -> None:
    from graphql.execution.values import get_variable_values

    from meterworks.facades.salesbricks import direct

    plan = direct._plan_of(INCREMENT, None)
    assert plan is not None
    assert plan.scalars is not None
    good = {"timestamp": WHEN, "subscriptionId": "sub_1", "brickId": "mtr_1", "count": 3.0}
    definitions = plan.operation.variable_definitions

    def described(values: Any) -> tuple[Any, ...]:
        # Each coercion makes wrapping types (`String!`) of its own: compared by their names.
        sources = {
            name: (str(source.signature.type), source.signature.default, source.value)
            for name, source in values.sources.items()
        }
        return sources, values.coerced

    for variables in (good, {**good, "count": 2**31 - 1, "unused": [1, {"a": 2}]}):
        walked = get_variable_values(direct.schema._schema, definitions or (), variables)
        assert described(direct._scalars(plan, variables)) == described(walked)
    assert direct._scalars(plan, good).coerced["count"] == 3  # type: ignore[union-attr]
    # Anything the walk would refuse, or treat otherwise, is left to it.
    for changed in (
        {"count": True}, {"count": "3"}, {"count": 1.5}, {"count": 2**31}, {"count": None},
        {"count": [3]}, {"timestamp": "yesterday"}, {"timestamp": 12345},
        {"subscriptionId": 7}, {"brickId": {"id": "x"}},
    ):  # fmt: skip
        assert direct._scalars(plan, {**good, **changed}) is None, changed
    assert direct._scalars(plan, {k: v for k, v in good.items() if k != "count"}) is None
    assert direct._scalars(plan, [good]) is None
    # A default value (or a variable that is not a scalar) leaves every call to the walk.
    defaulted = direct._plan_of(INCREMENT.replace("$count: Int!", "$count: Int! = 4"), None)
    assert defaulted is not None
    assert defaulted.scalars is None
