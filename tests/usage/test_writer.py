"""The ledger writer on its own: a caller whose write is stuck is told so, never left with a 500."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from meterworks.errors import Unavailable
from meterworks.kit.clock import FrozenClock
from meterworks.usage import service as usage_service
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter
from tests.api.builders import NOW, Api, event


def own_writer(api: Api) -> tuple[LedgerWriter, UsageService]:
    """A writer (not started) and a usage service over it, beside the server's own."""
    writer = LedgerWriter(api.server.db, FrozenClock(NOW))
    return writer, UsageService(api.server.db, writer, FrozenClock(NOW), api.server.settings)


@contextmanager
def held_writer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[UsageService, Callable[[], None]]]:
    """A started writer of our own, held by a job (what a very slow commit looks like to the
    callers behind it), with a commit timeout of 0.2 s; yields its usage service and `let_go`,
    which ends the hold and gives callers the usual timeout again."""
    writer, usage = own_writer(api)
    release = threading.Event()
    writer.start()

    def let_go() -> None:
        release.set()
        monkeypatch.setattr(usage_service, "COMMIT_TIMEOUT_S", 30.0)

    try:
        writer.submit_job(api.org.id, lambda conn: (release.wait(30), set()))
        monkeypatch.setattr(usage_service, "COMMIT_TIMEOUT_S", 0.2)
        yield usage, let_go
    finally:
        release.set()
        writer.stop()


def test_a_write_that_does_not_commit_in_time_is_unavailable_and_safe_to_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        batch = [event("slow", subscription_id=setup.id, meter=setup.key("sum"), quantity=3)]
        with pytest.raises(Unavailable) as refused:
            usage.record(api.org.id, batch, source="native")
        assert refused.value.code == "commit_timeout"
        assert refused.value.status == 503
        let_go()
        # The first write landed after all: the retry is a duplicate, counted once.
        result = usage.record(api.org.id, batch, source="native")
        assert (result.accepted, result.duplicates) == (0, 1)
    assert api.quantities(setup.id) == {setup.key("sum"): "3"}


def test_a_stopped_writer_refuses_with_unavailable(api: Api) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    batch = [event(subscription_id=setup.id, meter=setup.key("sum"))]
    with pytest.raises(Unavailable):
        usage.record(api.org.id, batch, source="native")
    assert api.ledger_rows() == 0


def test_a_caller_that_gives_up_before_its_turn_is_not_written_and_the_writer_lives_on(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    setup = api.metered("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        gone = [event("gone", subscription_id=setup.id, meter=setup.key("sum"), quantity=5)]
        # The async path cancels its future on timeout while the batch still waits in line.
        with pytest.raises(Unavailable):
            asyncio.run(usage.record_async(api.org.id, gone, source="native"))
        let_go()
        later = [event("later", subscription_id=setup.id, meter=setup.key("sum"), quantity=2)]
        result = usage.record(api.org.id, later, source="native")
        assert (result.accepted, result.duplicates) == (1, 0)
    assert api.ledger_rows() == 1
    assert api.quantities(setup.id) == {setup.key("sum"): "2"}
