"""End to end against the oracle: random batches and corrections through the API, on both
dialects, then every period of every aggregation read back and the rollups checked.

This drives the writer's every path (in-order folds, out-of-order rebuilds, corrections by
delta and by rebuild) through HTTP and the real databases, and compares with the brute-force
oracle of test_aggregations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterworks.catalog.meters import Aggregation
from meterworks.kit.instants import from_micros, to_micros
from tests.api.builders import Api, event
from tests.usage.test_aggregations import Event, agrees, oracle

D = Decimal
PERIODS = [
    (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
    (datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)),
    (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
]
SPAN_US = to_micros(PERIODS[-1][1]) - to_micros(PERIODS[0][0])
AGGREGATIONS = [a.value for a in Aggregation]


@dataclass
class Sent:
    """What the test sent for one key: the oracle's view of the ledger."""

    aggregation: str
    seq: int
    ts_us: int
    operation: str
    quantity: Decimal
    value: str | None
    voided: bool = False


@st.composite
def new_event(draw: st.DrawFn) -> dict[str, Any]:
    aggregation = draw(st.sampled_from(AGGREGATIONS))
    offset = draw(st.integers(0, SPAN_US - 1))
    # Some events share an instant, and many sit on period boundaries.
    ts_us = to_micros(PERIODS[0][0]) + draw(
        st.one_of(st.just(offset), st.sampled_from([0, offset - offset % 86_400_000_000]))
    )
    level = aggregation in {"max", "latest", "prorated"}
    operation = draw(st.sampled_from(["add", "set"])) if level else "add"
    quantity = D(draw(st.integers(-50 if level and operation == "add" else 0, 50))) / D(
        draw(st.sampled_from([1, 4, 1000]))
    )
    value = draw(st.sampled_from(["a", "b", "c"])) if aggregation == "unique_count" else None
    return {
        "aggregation": aggregation,
        "ts_us": ts_us,
        "operation": operation,
        "quantity": quantity,
        "value": value,
    }


steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(new_event(), min_size=1, max_size=8)),
        st.tuples(st.just("amend"), st.integers(0, 10_000), st.integers(0, 40)),
        st.tuples(st.just("void"), st.integers(0, 10_000)),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_random_histories_read_back_as_the_oracle_says(api: Api, plan: list[Any]) -> None:
    api.at(datetime(2025, 4, 2, tzinfo=UTC))
    setup = api.metered(*AGGREGATIONS)
    sent: dict[str, Sent] = {}
    for step in plan:
        if step[0] == "batch":
            events = []
            for drawn in step[1]:
                key = f"{setup.id}-{len(sent)}"
                sent[key] = Sent(seq=len(sent), **drawn)
                events.append(
                    event(
                        key,
                        subscription_id=setup.id,
                        meter=setup.key(drawn["aggregation"]),
                        timestamp=from_micros(drawn["ts_us"]),
                        operation=drawn["operation"],
                        quantity=None if drawn["aggregation"] == "count" else drawn["quantity"],
                        properties=None if drawn["value"] is None else {"user": drawn["value"]},
                    )
                )
                if drawn["aggregation"] == "count":
                    sent[key].quantity = D(1)
            assert api.record(events)["accepted"] == len(events)
            continue
        live = [k for k, s in sent.items() if not s.voided]
        if not live:
            continue
        key = live[step[1] % len(live)]
        target = sent[key]
        if step[0] == "void":
            assert api.client.delete(f"/v1/events/{key}").status_code == 200
            target.voided = True
        elif target.aggregation not in {"count", "unique_count"}:
            amount = D(step[2]) / 4
            if target.operation == "add" and target.aggregation != "sum":
                amount -= 5  # a level delta may be negative
            response = api.client.patch(f"/v1/events/{key}", json={"quantity": str(amount)})
            assert response.status_code == 200, response.text
            target.quantity = amount

    for start, end in PERIODS:
        got = api.quantities(setup.id, at=start)
        for aggregation in AGGREGATIONS:
            history = [
                Event(s.ts_us, s.seq, s.operation, s.quantity, s.value)
                for s in sent.values()
                if s.aggregation == aggregation and not s.voided
            ]
            expected: Fraction = oracle(
                Aggregation(aggregation), history, to_micros(start), to_micros(end), to_micros(end)
            )
            quantity = D(got[setup.key(aggregation)])
            assert agrees(Aggregation(aggregation), quantity, expected), (
                aggregation,
                start,
                quantity,
                expected,
            )
    api.assert_rollups_match_ledger()
