"""Billing views: the invoice preview, rebuilt after usage writes, debounced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from meterworks.app import build_context
from meterworks.billing import views
from meterworks.db import tables as t
from meterworks.kit.clock import FrozenClock
from tests.scenarios.story import Story, at, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)


def _subscription(story: Story) -> str:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "10.00"},
            {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.10"},
        ]
    )
    return story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")


def _preview(story: Story, sub: str) -> dict[str, Any]:
    return dict(ok(story.client.get(f"/v1/subscriptions/{sub}/invoice-preview")))


def _request(story: Story, sub: str) -> Any:
    r = t.billing_view_requests.c
    with story.server.db.read() as conn:
        return conn.execute(
            select(r.requested_at, r.due_at).where(
                r.organization_id == story.org.id, r.subscription_id == sub
            )
        ).first()


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_preview_prices_the_current_period(story: Story) -> None:
    sub = _subscription(story)
    story.now("2025-01-10")
    story.send(sub, "api_calls", "2025-01-05", 120, key="a")
    preview = _preview(story, sub)
    assert (preview["id"], preview["number"], preview["status"]) == (None, None, "draft")
    assert preview["period"] == {"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}
    assert preview["counted_until"] == "2025-01-10T00:00:00Z"
    assert [(x["type"], x["period"]["start"][:10], x["amount"]) for x in preview["lines"]] == [
        ("fixed", "2025-02-01", "10.00"),  # next month's fee, in advance
        ("usage", "2025-01-01", "12.00"),
        ("fixed_adjustment", "2025-01-01", "10.00"),  # no opening invoice yet: not billed
    ]
    assert preview["view"]["builds"] == 1
    assert preview["view"]["built_at"] == "2025-01-10T00:00:00Z"
    story.run()  # the opening invoice bills January's fee
    story.now("2025-01-10T00:00:05")
    story.send(sub, "api_calls", "2025-01-10", 1, key="b")
    story.now("2025-01-10T00:00:10")
    assert [x["type"] for x in _preview(story, sub)["lines"]] == ["fixed", "usage"]


def test_a_burst_of_writes_causes_one_rebuild_after_the_burst(story: Story) -> None:
    sub = _subscription(story)
    story.now("2025-01-10T12:00:00")
    first = _preview(story, sub)
    assert (first["view"]["builds"], first["total"]) == (1, "20.00")

    # A burst: each write pushes the rebuild back by the debounce (2 s of the server's clock).
    for n in range(10):
        story.now(at("2025-01-10T12:00:00") + timedelta(milliseconds=500 * n))
        story.send(sub, "api_calls", "2025-01-10T11:00", 10, key=f"burst-{n}")
    assert _request(story, sub).due_at == at("2025-01-10T12:00:06.5")
    during = _preview(story, sub)
    assert (during["view"]["builds"], during["total"]) == (1, "20.00")  # not rebuilt yet
    assert during["view"]["rebuild_pending"] is True

    # The burst is over: once the debounce has passed, the background loop rebuilds once.
    story.now("2025-01-10T12:00:07")
    _wait_for(lambda: _request(story, sub) is None)
    after = _preview(story, sub)
    assert (after["view"]["builds"], after["total"]) == (2, "30.00")
    assert after["view"]["rebuild_pending"] is False
    time.sleep(1.0)  # and no further rebuild follows
    assert _preview(story, sub)["view"]["builds"] == 2


def test_a_read_after_the_debounce_rebuilds_at_once(story: Story) -> None:
    sub = _subscription(story)
    story.now("2025-01-10T12:00:00")
    _preview(story, sub)
    story.send(sub, "api_calls", "2025-01-10T11:00", 10, key="one")
    story.now("2025-01-10T12:00:02")  # exactly due
    view = _preview(story, sub)
    assert (view["view"]["builds"], view["total"]) == (2, "21.00")
    assert view["view"]["built_at"] == "2025-01-10T12:00:02Z"


def test_a_new_period_rebuilds_the_view(story: Story) -> None:
    sub = _subscription(story)
    story.now("2025-01-31T23:00")
    assert _preview(story, sub)["period"]["start"] == "2025-01-01T00:00:00Z"
    story.now("2025-02-01T00:00")
    view = _preview(story, sub)
    assert view["period"]["start"] == "2025-02-01T00:00:00Z"
    assert view["view"]["builds"] == 2


def test_an_ended_subscription_has_no_preview(story: Story) -> None:
    sub = _subscription(story)
    story.now("2025-01-02")
    ok(story.client.post(f"/v1/subscriptions/{sub}/cancel"))
    response = story.client.get(f"/v1/subscriptions/{sub}/invoice-preview")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "subscription_ended"


@pytest.fixture
def context(server: RunningServer) -> Iterator[Any]:
    """A second application context over the session's database, its writer running."""
    settings = server.settings.with_overrides(views_enabled=False)
    ctx = build_context(settings, FrozenClock(at("2025-01-10")))
    ctx.writer.start()
    yield ctx
    ctx.writer.stop()
    ctx.db.dispose()


def test_no_build_writes_schedule_no_rebuild(story: Story, context: Any) -> None:
    sub = _subscription(story)
    event = {
        "subscription_id": sub,
        "meter": "api_calls",
        "timestamp": "2025-01-09T00:00:00Z",
        "quantity": "3",
    }
    result = context.usage.record(
        story.org.id, [{**event, "idempotency_key": "quiet"}], source="gradient",
        rebuild_view=False,
    )  # fmt: skip
    assert result.accepted == 1
    assert _request(story, sub) is None
    context.usage.record(story.org.id, [{**event, "idempotency_key": "loud"}], source="gradient")
    assert _request(story, sub).due_at == at("2025-01-10T00:00:02")


def _one_write_due_at_two_seconds(story: Story) -> str:
    """A subscription whose view is built, then one write due for a rebuild at 12:00:02; the
    server's clock stays at 12:00:01, so its own loop leaves it to the test."""
    sub = _subscription(story)
    story.now("2025-01-10T12:00:00")
    _preview(story, sub)
    story.send(sub, "api_calls", "2025-01-10T11:00", 10, key="one")
    story.now("2025-01-10T12:00:01")
    return sub


def test_usage_written_while_a_view_is_built_is_left_for_the_next_rebuild(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = _one_write_due_at_two_seconds(story)
    original = views.build

    def build_while_usage_arrives(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = original(*args, **kwargs)
        # Written and committed while the rebuild is between its read and its write.
        story.send(sub, "api_calls", "2025-01-10T11:30", 5, key="two")
        return body

    monkeypatch.setattr(views, "build", build_while_usage_arrives)
    view, rebuilt = views.rebuild(
        story.server.db, story.org.id, sub, at("2025-01-10T12:00:02"), only_if_due=True
    )
    monkeypatch.undo()
    assert rebuilt
    assert view is not None
    assert (view.builds, view.body["total"]) == (2, "21.00")  # "one" only
    assert _request(story, sub).due_at == at("2025-01-10T12:00:03")  # "two" asked for more

    story.now("2025-01-10T12:00:04")
    _wait_for(lambda: _request(story, sub) is None)
    after = _preview(story, sub)
    assert (after["view"]["builds"], after["total"]) == (3, "21.50")


def test_a_view_rebuilt_meanwhile_elsewhere_is_not_overwritten(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = _one_write_due_at_two_seconds(story)
    original = views.build
    db, now = story.server.db, at("2025-01-10T12:00:02")

    def build_while_another_rebuilds(*args: Any, **kwargs: Any) -> dict[str, Any]:
        monkeypatch.setattr(views, "build", original)
        # Another process rebuilds and stores the view first.
        assert views.rebuild(db, story.org.id, sub, now, only_if_due=True)[1]
        return original(*args, **kwargs)

    monkeypatch.setattr(views, "build", build_while_another_rebuilds)
    view, rebuilt = views.rebuild(db, story.org.id, sub, now, only_if_due=True)
    assert not rebuilt
    assert view is not None
    assert (view.builds, view.body["total"]) == (2, "21.00")  # the other process's build
    assert _request(story, sub) is None


def test_a_due_view_is_built_by_one_process_only(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = _one_write_due_at_two_seconds(story)
    db, now = story.server.db, at("2025-01-10T12:00:02")
    original = views.build
    meanwhile: list[int] = []

    def build_while_another_loop_looks(*args: Any, **kwargs: Any) -> dict[str, Any]:
        meanwhile.append(views.rebuild_due(db, now))  # another process's loop, meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(views, "build", build_while_another_loop_looks)
    assert views.rebuild_due(db, now) >= 1
    monkeypatch.undo()
    assert meanwhile
    assert set(meanwhile) == {0}  # everything due was claimed by the first loop
    assert _request(story, sub) is None
    view = _preview(story, sub)
    assert (view["view"]["builds"], view["total"]) == (2, "21.00")


def test_a_request_asked_for_again_before_its_claim_is_left_for_later(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.10"}]
    )
    again, other = (
        story.subscribe(story.customer(name), plan, "2025-01-01T00:00:00Z")
        for name in ("again", "other")
    )
    story.now("2025-01-10T12:00:00")
    for sub in (again, other):
        _preview(story, sub)
        story.send(sub, "api_calls", "2025-01-10T11:00", 10, key=f"first-{sub}")
    db, now = story.server.db, at("2025-01-10T12:00:02")
    original = db.transaction
    asked: list[str] = []

    def claim_after_another_write(*args: Any, **kwargs: Any) -> Any:
        if not asked:  # the claim's transaction: a write asks for `again` once more first
            asked.append(again)
            story.now("2025-01-10T12:00:01")
            story.send(again, "api_calls", "2025-01-10T11:30", 5, key="second")
        return original(*args, **kwargs)

    monkeypatch.setattr(db, "transaction", claim_after_another_write)
    assert views.rebuild_due(db, now) == 1
    monkeypatch.undo()
    assert asked == [again]
    assert _request(story, other) is None
    left = _request(story, again)
    assert left is not None
    assert left.requested_at == at("2025-01-10T12:00:01")
    # The other view was rebuilt with its write; this one waits for its own rebuild.
    assert _preview(story, other)["total"] == "1.00"
    assert views.rebuild_due(db, at("2025-01-10T12:00:03")) == 1
    assert _request(story, again) is None
    assert _preview(story, again)["total"] == "1.50"


def test_every_due_request_is_claimed_and_rebuilt_in_one_pass(story: Story) -> None:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.10"}]
    )
    subs = [
        story.subscribe(story.customer(f"c{n}"), plan, "2025-01-01T00:00:00Z") for n in range(30)
    ]
    story.now("2025-01-10T12:00:00")
    for n, sub in enumerate(subs):
        story.send(sub, "api_calls", "2025-01-10T11:00", n + 1, key=f"k-{sub}")
    db = story.server.db
    assert views.rebuild_due(db, at("2025-01-10T12:00:01")) == 0  # none due yet
    assert views.rebuild_due(db, at("2025-01-10T12:00:02")) == len(subs)
    assert all(_request(story, sub) is None for sub in subs)
    assert [_preview(story, sub)["total"] for sub in subs] == [
        f"{Decimal(n + 1) / 10:.2f}" for n in range(len(subs))
    ]
