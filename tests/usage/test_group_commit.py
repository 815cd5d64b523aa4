"""Group commit under concurrency: every request acknowledged, totals exact, fewer commits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx

from meterworks.kit.decimals import format_decimal
from tests.api.builders import Api, dumps, event

CLIENTS = 32
BATCHES = 20
EVENTS_PER_BATCH = 5


def _writer_commits(api: Api) -> int:
    assert api.server.context is not None
    return api.server.context.writer.commits


def test_concurrent_requests_are_all_acknowledged_exactly_and_commit_together(api: Api) -> None:
    setup = api.metered("sum", "count")
    start = threading.Barrier(CLIENTS)

    def client_run(n: int) -> list[dict[str, Any]]:
        answers = []
        headers = {"Authorization": f"Bearer {api.org.token}"}
        with httpx.Client(base_url=api.server.base_url, headers=headers, timeout=60) as client:
            start.wait()
            for b in range(BATCHES):
                events = [
                    event(
                        f"c{n}-b{b}-e{e}",
                        subscription_id=setup.id,
                        meter=setup.key("sum" if e % 2 else "count"),
                        quantity=f"0.{n:02d}{b:02d}{e}",
                    )
                    for e in range(EVENTS_PER_BATCH)
                ]
                response = client.post("/v1/events", content=dumps({"events": events}))
                assert response.status_code == 200, response.text
                answers.append(response.json())
        return answers

    commits_before = _writer_commits(api)
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(client_run, range(CLIENTS)) for a in batch]
    commits = _writer_commits(api) - commits_before

    requests = CLIENTS * BATCHES
    assert len(answers) == requests
    assert all(a == {"accepted": EVENTS_PER_BATCH, "duplicates": 0} for a in answers)
    assert commits < requests, commits
    expected_sum = sum(
        int(f"{n:02d}{b:02d}{e}")
        for n in range(CLIENTS)
        for b in range(BATCHES)
        for e in range(EVENTS_PER_BATCH)
        if e % 2
    )
    count_per_batch = len([e for e in range(EVENTS_PER_BATCH) if not e % 2])
    assert api.quantities(setup.id) == {
        setup.key("sum"): format_decimal(Decimal(expected_sum).scaleb(-5)),
        setup.key("count"): str(requests * count_per_batch),
    }
    assert api.ledger_rows() == requests * EVENTS_PER_BATCH


def test_concurrent_replays_of_the_same_keys_count_once(api: Api) -> None:
    setup = api.metered("sum")
    batch = [
        event(f"same-{i}", subscription_id=setup.id, meter=setup.key("sum"), quantity=i)
        for i in range(1, 11)
    ]
    senders = 16
    start = threading.Barrier(senders)

    def send(_: int) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {api.org.token}"}
        with httpx.Client(base_url=api.server.base_url, headers=headers, timeout=60) as client:
            start.wait()
            response = client.post("/v1/events", content=dumps({"events": batch}))
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send, range(senders)))
    assert sum(a["accepted"] for a in answers) == 10
    assert sum(a["duplicates"] for a in answers) == 10 * (senders - 1)
    assert api.quantities(setup.id) == {setup.key("sum"): "55"}
    assert api.ledger_rows() == 10


def test_a_conflicting_batch_fails_alone_while_its_group_commits(api: Api) -> None:
    setup = api.metered("sum")
    meter = setup.key("sum")
    api.record([event("taken", subscription_id=setup.id, meter=meter, quantity=1)])
    senders = 16
    start = threading.Barrier(senders)

    def send(n: int) -> int:
        batch = [event(f"fresh-{n}", subscription_id=setup.id, meter=meter, quantity=10)]
        if n % 2:
            batch.append(event("taken", subscription_id=setup.id, meter=meter, quantity=2))
        headers = {"Authorization": f"Bearer {api.org.token}"}
        with httpx.Client(base_url=api.server.base_url, headers=headers, timeout=60) as client:
            start.wait()
            response = client.post("/v1/events", content=dumps({"events": batch}))
        if n % 2:
            assert response.json()["error"]["code"] == "idempotency_conflict"
        else:
            assert response.json() == {"accepted": 1, "duplicates": 0}
        return response.status_code

    with ThreadPoolExecutor(senders) as pool:
        statuses = list(pool.map(send, range(senders)))
    assert statuses == [200, 409] * (senders // 2)
    assert api.quantities(setup.id) == {meter: str(1 + 10 * senders // 2)}
    assert api.ledger_rows() == 1 + senders // 2
