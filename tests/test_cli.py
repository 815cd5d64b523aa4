"""The `meterworks` command line, run for real as a subprocess against a real database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from meterworks.api.spread import LARGE_BYTES, shared_path
from meterworks.config import Settings
from meterworks.db import tables as t
from meterworks.db.engine import Database
from meterworks.kit.clock import FrozenClock
from tests.support.databases import DIALECTS, empty_database
from tests.support.server import RunningServer, serve


@pytest.fixture(scope="module", params=DIALECTS, ids=DIALECTS)
def cli_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of this module's own: the CLI migrates it, and one test corrupts it."""
    with empty_database(request.param, tmp_path_factory.mktemp("cli")) as url:
        yield url


@pytest.fixture(scope="module")
def cli_server(cli_database_url: str) -> Iterator[RunningServer]:
    """The API over the CLI's database, its clock at the real now (the demo uses the real one)."""
    db = Database(cli_database_url)
    settings = Settings().with_overrides(database_url=cli_database_url, scheduler_enabled=False)
    try:
        with serve(settings, db, FrozenClock(datetime.now(UTC))) as running:
            yield running
    finally:
        db.dispose()


def meterworks(*args: str) -> subprocess.CompletedProcess[str]:
    # Wide columns: the report lines must not be wrapped by the terminal renderer.
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("METERWORKS_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "meterworks", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def test_migrate(cli_database_url: str) -> None:
    done = meterworks("migrate", "--db", cli_database_url)
    assert done.returncode == 0, done.stderr
    assert "schema at revision" in done.stdout


def test_keys_create_prints_a_token_that_works(
    cli_database_url: str, cli_server: RunningServer
) -> None:
    done = meterworks(
        "keys", "create", "--db", cli_database_url, "--org", "CLI test", "--name", "ci"
    )
    assert done.returncode == 0, done.stderr
    token = last_line(done.stdout)
    key_id, _, secret = token.partition(".")
    assert key_id.startswith("key_")
    assert secret
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=cli_server.base_url, headers=headers, timeout=30) as client:
        response = client.post(
            "/v1/meters",
            json={"key": "calls", "name": "Calls", "unit": "call", "aggregation": "sum"},
        )
        assert response.status_code == 201, response.text
        assert [m["key"] for m in client.get("/v1/meters").json()["data"]] == ["calls"]
    # A second key for the same organization sees the same objects.
    again = meterworks("keys", "create", "--db", cli_database_url, "--org", "CLI test")
    other = {"Authorization": f"Bearer {last_line(again.stdout)}"}
    with httpx.Client(base_url=cli_server.base_url, headers=other, timeout=30) as client:
        assert [m["key"] for m in client.get("/v1/meters").json()["data"]] == ["calls"]


@pytest.fixture(scope="module")
def demo(cli_database_url: str) -> subprocess.CompletedProcess[str]:
    """`meterworks demo`, run once per database."""
    return meterworks("demo", "--db", cli_database_url)


def test_demo_fills_a_database_whose_key_reads_usage(
    demo: subprocess.CompletedProcess[str], cli_server: RunningServer
) -> None:
    assert demo.returncode == 0, demo.stderr
    token = last_line(demo.stdout)
    assert "usage events" in demo.stdout
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=cli_server.base_url, headers=headers, timeout=30) as client:
        meters = client.get("/v1/meters").json()["data"]
        assert sorted(m["key"] for m in meters) == ["api_calls", "seats", "storage_gb"]
        subscriptions = client.get("/v1/subscriptions").json()["data"]
        assert len(subscriptions) == 3
        for sub in subscriptions:
            usage = client.get(f"/v1/subscriptions/{sub['id']}/usage")
            assert usage.status_code == 200, usage.text
            quantities = {m["key"]: m["quantity"] for m in usage.json()["meters"]}
            assert set(quantities) == {"api_calls", "seats", "storage_gb"}
            assert all(q != "0" for q in quantities.values()), quantities


def test_ledger_verify_passes_then_finds_a_corrupted_rollup(
    cli_database_url: str, cli_server: RunningServer, demo: subprocess.CompletedProcess[str]
) -> None:
    assert demo.returncode == 0, demo.stderr
    ok = meterworks("ledger", "verify", "--db", cli_database_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.rstrip().endswith(": ok")
    assert "DIFF" not in ok.stdout

    db = cli_server.db
    r = t.usage_rollups.c
    with db.transaction() as conn:
        row = conn.execute(
            select(t.usage_rollups).where(r.event_count > 0).order_by(r.subscription_id).limit(1)
        ).one()
        conn.execute(
            t.usage_rollups.update()
            .where(
                r.organization_id == row.organization_id,
                r.subscription_id == row.subscription_id,
                r.meter_id == row.meter_id,
                r.period_start_us == row.period_start_us,
            )
            .values(event_count=row.event_count + 1)
        )
    try:
        bad = meterworks("ledger", "verify", "--db", cli_database_url)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "1 differences" in bad.stdout
        assert (
            f"DIFF org={row.organization_id} sub={row.subscription_id} meter={row.meter_id} "
            f"period_start={row.period_start_us}"
        ) in bad.stdout
        assert f"stored:   count={row.event_count + 1} " in bad.stdout
        assert f"expected: count={row.event_count} " in bad.stdout
    finally:
        with db.transaction() as conn:
            conn.execute(
                t.usage_rollups.update()
                .where(
                    r.organization_id == row.organization_id,
                    r.subscription_id == row.subscription_id,
                    r.meter_id == row.meter_id,
                    r.period_start_us == row.period_start_us,
                )
                .values(event_count=row.event_count)
            )
    assert meterworks("ledger", "verify", "--db", cli_database_url).returncode == 0


def test_a_database_that_cannot_be_opened_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    for url, status, message in (
        (f"sqlite:///{tmp_path}/no/such/dir/x.db", 1, "cannot open the database"),
        ("not-a-url", 2, "not a database URL"),
    ):
        done = meterworks("migrate", "--db", url)
        assert done.returncode == status, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_a_refused_input_is_a_message_not_a_traceback(cli_database_url: str) -> None:
    done = meterworks("keys", "create", "--db", cli_database_url, "--org", "   ")
    assert done.returncode == 1
    assert "invalid_input: an organization needs a name" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("dialect", DIALECTS)
def test_serve_with_two_workers_counts_every_event_once(dialect: str, tmp_path: Path) -> None:
    with empty_database(dialect, tmp_path) as url:
        port = _free_port()
        env = {**os.environ, "METERWORKS_SCHEDULER_ENABLED": "false"}
        env.pop("METERWORKS_DATABASE_URL", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "meterworks", "serve", "--db", url, "--port", str(port),
             "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _await_health(base, process)
            assert len(_children(process.pid)) >= 2  # the workers (and no more than a helper)
            token = last_line(meterworks("keys", "create", "--db", url, "--org", "W").stdout)
            subscription_id, when = _record_from_many_connections(base, token)
            # The processes count the connections of large calls in a file they share.
            assert Path(shared_path(process.pid)).exists()
            _record_large_calls_on_kept_connections(base, token, subscription_id, when)
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert not Path(shared_path(process.pid)).exists()
        assert b"Traceback" not in stderr
        assert meterworks("ledger", "verify", "--db", url).returncode == 0


def _await_health(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve --workers 2 did not become healthy")


def _record_from_many_connections(base: str, token: str) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:

        def created(path: str, body: dict[str, object]) -> dict[str, str]:
            response = client.post(path, json=body)
            assert response.status_code == 201, response.text
            result: dict[str, str] = response.json()
            return result

        meter = created(
            "/v1/meters", {"key": "calls", "name": "Calls", "unit": "call", "aggregation": "sum"}
        )
        plan = created(
            "/v1/plans",
            {"name": "P", "currency": "USD", "interval": "month", "charges": [
                {"type": "usage", "meter": meter["key"], "model": "per_unit", "unit_price": "1"}
            ]},
        )  # fmt: skip
        customer = created("/v1/customers", {"external_id": "c1", "name": "C"})
        now = datetime.now(UTC).replace(microsecond=0)
        sub = created(
            "/v1/subscriptions",
            {"customer_id": customer["id"], "plan_id": plan["id"],
             "starts_at": (now - timedelta(days=1)).isoformat()},
        )  # fmt: skip
    when = (now - timedelta(minutes=5)).isoformat()
    batches = [
        [
            {"idempotency_key": f"b{b}-{i}", "meter": "calls", "subscription_id": sub["id"],
             "timestamp": when, "quantity": "0.25"}
            for i in range(50)
        ]
        for b in range(12)
    ]  # fmt: skip

    def send(batch: list[dict[str, object]]) -> dict[str, int]:
        # A connection per call, so the kernel spreads the calls over both processes.
        response = httpx.post(f"{base}/v1/events", json={"events": batch}, headers=headers,
                              timeout=60)  # fmt: skip
        assert response.status_code == 200, response.text
        result: dict[str, int] = response.json()
        return result

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(send, batches))
        again = list(pool.map(send, batches))
    assert first == [{"accepted": 50, "duplicates": 0}] * 12
    assert again == [{"accepted": 0, "duplicates": 50}] * 12
    usage = httpx.get(
        f"{base}/v1/subscriptions/{sub['id']}/usage", params={"at": when}, headers=headers
    ).json()
    assert [m["quantity"] for m in usage["meters"]] == ["150"]
    return sub["id"], when


def _record_large_calls_on_kept_connections(
    base: str, token: str, subscription_id: str, when: str
) -> None:
    """Four clients, each on a connection it keeps, send large calls (past 64 KiB): every call
    is answered exactly, whether the process answering it kept the connection or closed it for
    the client to connect again (api/spread.py)."""
    headers = {"Authorization": f"Bearer {token}"}

    def client(number: int) -> list[dict[str, int]]:
        answers = []
        with httpx.Client(base_url=base, headers=headers, timeout=60) as kept:
            for call in range(4):
                batch = [
                    {"idempotency_key": f"large-{number}-{call}-{i}", "meter": "calls",
                     "subscription_id": subscription_id, "timestamp": when, "quantity": "0.5"}
                    for i in range(700)
                ]  # fmt: skip
                content = json.dumps({"events": batch}).encode()
                assert len(content) >= LARGE_BYTES
                response = kept.post("/v1/events", content=content)
                assert response.status_code == 200, response.text
                answers.append(response.json())
        return answers

    with ThreadPoolExecutor(4) as pool:
        answers = [answer for answered in pool.map(client, range(4)) for answer in answered]
    assert answers == [{"accepted": 700, "duplicates": 0}] * 16
    usage = httpx.get(
        f"{base}/v1/subscriptions/{subscription_id}/usage", params={"at": when}, headers=headers
    ).json()
    assert [m["quantity"] for m in usage["meters"]] == [str(150 + 16 * 350)]


@pytest.mark.parametrize("flag", [None, "--access-log"])
def test_serve_logs_each_request_only_when_asked(flag: str | None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    port = _free_port()
    env = {**os.environ, "METERWORKS_SCHEDULER_ENABLED": "false"}
    env.pop("METERWORKS_DATABASE_URL", None)
    env.pop("METERWORKS_ACCESS_LOG", None)
    command = [sys.executable, "-m", "meterworks", "serve", "--db", url, "--port", str(port)]
    process = subprocess.Popen(
        command + ([flag] if flag else []),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        _await_health(f"http://127.0.0.1:{port}", process)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/meters").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    logged = b'"GET /v1/meters HTTP/1.1" 401' in output
    assert logged is (flag == "--access-log"), output
    assert b"listening on" in output  # start-up is logged either way
