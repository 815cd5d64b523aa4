"""The GraphQL schema is the vendor's, and the committed snapshot is what the code serves."""

from __future__ import annotations

from pathlib import Path

import meterworks.facades.salesbricks as package
from meterworks.facades.salesbricks.schema import schema

SNAPSHOT = Path(package.__file__).parent / "schema.graphql"

# The vendor's published SDL, line for line.
VENDOR_SDL = """type IncrementCounterResponse {
  success: Boolean!
}

type Mutation {
  incrementCounter(timestamp: DateTime!, subscriptionId: String!, brickId: String!, count: Int!): IncrementCounterResponse!
  setGauge(timestamp: DateTime!, subscriptionId: String!, brickId: String!, value: Int!): SetGaugeResponse!
}"""  # noqa: E501


def test_the_committed_snapshot_is_the_printed_schema() -> None:
    assert SNAPSHOT.read_text() == schema.as_str() + "\n", (
        "the schema changed: review it, then refresh schema.graphql from `schema.as_str()`"
    )


def test_the_schema_is_the_vendors() -> None:
    printed = schema.as_str()
    assert VENDOR_SDL in printed
    assert "type SetGaugeResponse {\n  success: Boolean!\n}" in printed
    assert "scalar DateTime" in printed
    # Nothing else can change data.
    assert printed.count("type Mutation") == 1
    assert "subscription" not in printed.lower().replace("subscriptionid", "")
