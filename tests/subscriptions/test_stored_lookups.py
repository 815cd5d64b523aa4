"""Ingestion's subscription lookups build each subscription from its row's stored values, and
build it again when they change: every answer equals an ordinary read of the subscription."""

from __future__ import annotations

from datetime import timedelta

from meterworks.subscriptions.service import (
    Subscription,
    get_subscription,
    subscriptions_by_id,
    subscriptions_charging,
)
from tests.api.builders import NOW, START, Api, iso


def test_ingestion_lookups_equal_ordinary_reads_and_follow_changes(api: Api) -> None:
    gold = api.metered(
        "sum",
        interval="quarter",
        metadata={"tier": "gold", "seats": 12, "tags": ["a", "é"], "nested": {"n": None}},
    )
    ending = api.metered(
        "max", customer=gold.customer, ends_at=iso(START + timedelta(days=90, microseconds=7))
    )
    ids = {gold.id, ending.id}
    org = api.org.id

    def looked_up() -> tuple[dict[str, Subscription], ...]:
        with api.server.db.read() as conn:
            ordinary = {sid: get_subscription(conn, org, sid) for sid in ids}
            by_id = dict(subscriptions_by_id(conn, org, ids))
            (alone,) = subscriptions_by_id(conn, org, {gold.id}).values()
            charging = subscriptions_charging(
                conn, org, {gold.customer["id"]}, lambda conn, org, plans: {}
            )
            of_customer = {sub.id: sub for sub, _ in charging[gold.customer["id"]]}
        assert alone == ordinary[gold.id]
        return ordinary, by_id, of_customer

    ordinary, by_id, of_customer = looked_up()
    assert by_id == ordinary
    assert of_customer == ordinary
    assert ordinary[gold.id].metadata == {
        "tier": "gold", "seats": 12, "tags": ["a", "é"], "nested": {"n": None},
    }  # fmt: skip
    # A second lookup meets the same stored values: the subscriptions built the first time.
    _, again, _ = looked_up()
    assert all(again[sid] is by_id[sid] for sid in ids)

    # Canceled, a subscription's row changes: the lookups build it anew.
    api.at(NOW)
    canceled = api.client.post(
        f"/v1/subscriptions/{gold.id}/cancel", json={"at": iso(NOW + timedelta(days=3))}
    )
    assert canceled.status_code == 200, canceled.text
    ordinary, after, of_customer = looked_up()
    assert after == ordinary
    assert of_customer == ordinary
    assert after[gold.id] != by_id[gold.id]
    assert after[gold.id].ends_at == NOW + timedelta(days=3)
    assert after[gold.id].canceled_at is not None
    assert after[ending.id] is by_id[ending.id]
