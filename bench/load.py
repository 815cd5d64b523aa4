"""Load from processes of their own: batched senders and concurrent request loops.

Clients run in separate processes (spawned, so they share nothing with the parent) and start
together on a barrier; the parent times each step between two barrier crossings, so the
figures cover the slowest client and include nothing of the clients' preparation.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import random
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx

from bench.workload import METERS, Expected, Stream

BARRIER_TIMEOUT_S = 1800.0
REQUEST_TIMEOUT_S = 300.0


@dataclass(slots=True)
class StepResult:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    expected: Expected = field(default_factory=Expected)
    elapsed: float = 0.0

    def merge(self, other: StepResult) -> None:
        self.requests += other.requests
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.failures.extend(other.failures)
        self.latencies.extend(other.latencies)
        self.expected.merge(other.expected)
        self.elapsed = max(self.elapsed, other.elapsed)


@dataclass(frozen=True, slots=True)
class Timed:
    seconds: float
    result: StepResult
    server_cpu_s: float = float("nan")  # CPU the server process used during the step


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_tree(pid: int) -> set[int]:
    """A process and its live descendants (the processes of `serve --workers N`)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grown = {pid}, True
    while grown:
        found = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= found
        grown = bool(found)
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and its live descendants."""
    ticks = 0
    for member in process_tree(pid):
        if (fields := _stat(member)) is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(
    pid: int, *, below: float = 0.05, window_s: float = 3.0, limit_s: float = 300.0
) -> float:
    """Wait until the process uses under `below` of a core over `window_s`; seconds waited.

    After a fill the server still works (billing views are rebuilt once no write has reached a
    subscription for 2 s): a read measured then would measure that work too. The window is
    longer than that debounce, or the quiet before the rebuilds would pass for idleness.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        if cpu_seconds(pid) - before < below * window_s:
            break
    return time.monotonic() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- batched senders ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchClient:
    """One client process: its streams (each with its batch size) and the order to send them."""

    base_url: str
    token: str
    parts: tuple[tuple[Stream, int], ...]
    steps: tuple[int, ...]  # indexes into parts; a part sent twice is a replay


def _batch_worker(spec: BatchClient, barrier: Barrier, results: mp.Queue[Any]) -> None:
    try:
        bodies = [stream.bodies(size) for stream, size in spec.parts]
        outcomes: list[StepResult] = []
        headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
        for part in spec.steps:
            outcome = StepResult()
            barrier.wait(BARRIER_TIMEOUT_S)
            started = time.perf_counter()
            # A connection per step: one kept across a wait at the barrier could be closed by the
            # server's keep-alive timeout (5 s) just as the next step sends on it.
            with httpx.Client(
                base_url=spec.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S
            ) as c:
                for body in bodies[part]:
                    sent = time.perf_counter()
                    response = c.post("/v1/events", content=body)
                    outcome.latencies.append(time.perf_counter() - sent)
                    outcome.requests += 1
                    if response.status_code != 200:
                        outcome.failures.append(f"{response.status_code} {response.text[:300]}")
                        continue
                    answer = response.json()
                    outcome.accepted += int(answer["accepted"])
                    outcome.duplicates += int(answer["duplicates"])
            outcome.elapsed = time.perf_counter() - started
            barrier.wait(BARRIER_TIMEOUT_S)
            outcomes.append(outcome)
        results.put(("ok", outcomes))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


def run_batches(clients: Sequence[BatchClient], server_pid: int) -> list[Timed]:
    """Run the clients' steps in lockstep; one timing per step, results summed over clients."""
    steps = len(clients[0].steps)
    assert all(len(c.steps) == steps for c in clients)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(clients) + 1)
    results: mp.Queue[Any] = ctx.Queue()
    processes = [
        ctx.Process(target=_batch_worker, args=(c, barrier, results), daemon=True) for c in clients
    ]
    for process in processes:
        process.start()
    seconds: list[float] = []
    cpu: list[float] = []
    try:
        for _ in range(steps):
            barrier.wait(BARRIER_TIMEOUT_S)
            started, cpu_before = time.perf_counter(), cpu_seconds(server_pid)
            barrier.wait(BARRIER_TIMEOUT_S)
            seconds.append(time.perf_counter() - started)
            cpu.append(cpu_seconds(server_pid) - cpu_before)
    except Exception as exc:
        raise RuntimeError(f"a client failed:\n{_first_error(results, len(clients))}") from exc
    per_step = [StepResult() for _ in range(steps)]
    for _ in clients:
        status, payload = results.get(timeout=BARRIER_TIMEOUT_S)
        if status != "ok":
            raise RuntimeError(f"a client failed:\n{payload}")
        for total, outcome in zip(per_step, payload, strict=True):
            total.merge(outcome)
    for process in processes:
        process.join(timeout=60)
    return [Timed(*step) for step in zip(seconds, per_step, cpu, strict=True)]


def _first_error(results: mp.Queue[Any], clients: int) -> str:
    for _ in range(clients):
        try:
            status, payload = results.get(timeout=10)
        except Exception:
            break
        if status != "ok":
            return str(payload)
    return "(no client reported an error)"


# --- concurrent request loops ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestClient:
    """One process running `connections` request loops for `duration_s` seconds.

    kind: `event` (one event per POST /v1/events), `usage` or `invoice-preview` (GET a random
    subscription's current usage or invoice preview) or `healthz` (the floor: the cheapest call
    that still reaches the database).
    """

    kind: str
    base_url: str
    token: str
    duration_s: float
    connections: int
    first_loop: int  # this process's loops are numbered from here, across all processes
    total_loops: int
    subscriptions: tuple[str, ...]
    key_prefix: str = "single"


async def _loop(
    spec: RequestClient, client: httpx.AsyncClient, loop: int, deadline: float, out: StepResult
) -> None:
    owned = spec.subscriptions[loop :: spec.total_loops] or spec.subscriptions
    rng = random.Random(loop)
    n = 0
    while time.monotonic() < deadline:
        sent = time.perf_counter()
        event: dict[str, Any] | None = None
        if spec.kind == "event":
            key, aggregation, _ = METERS[n % len(METERS)]
            event = {
                "idempotency_key": f"{spec.key_prefix}-{loop}-{n}",
                "subscription_id": owned[(n // len(METERS)) % len(owned)],
                "meter": key,
                # The real clock: each loop's events for a pair are then in time order.
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "quantity": "1.25" if aggregation == "sum" else str(1 + n % 40),
            }
            if aggregation != "sum":
                event["operation"] = "set"
            response = await client.post(
                "/v1/events", content=json.dumps({"events": [event]}).encode()
            )
        elif spec.kind in ("usage", "invoice-preview"):
            sub = spec.subscriptions[rng.randrange(len(spec.subscriptions))]
            response = await client.get(f"/v1/subscriptions/{sub}/{spec.kind}")
        else:
            response = await client.get("/healthz")
        out.latencies.append(time.perf_counter() - sent)
        out.requests += 1
        n += 1
        if response.status_code != 200:
            out.failures.append(f"{response.status_code} {response.text[:300]}")
            continue
        if event is not None:
            answer = response.json()
            out.accepted += int(answer["accepted"])
            out.duplicates += int(answer["duplicates"])
            if answer["accepted"] == 1:
                out.expected.add(event)


async def _requests(spec: RequestClient, barrier: Barrier) -> StepResult:
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    limits = httpx.Limits(
        max_connections=spec.connections, max_keepalive_connections=spec.connections
    )
    out = StepResult()
    async with httpx.AsyncClient(
        base_url=spec.base_url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as client:
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S)
        # Open every connection before the clock starts; after the barrier, since the server
        # closes connections idle for 5 s and the other clients may take longer to start.
        await asyncio.gather(*(client.get("/healthz") for _ in range(spec.connections)))
        started = time.perf_counter()
        deadline = time.monotonic() + spec.duration_s
        await asyncio.gather(
            *(
                _loop(spec, client, spec.first_loop + k, deadline, out)
                for k in range(spec.connections)
            )
        )
        out.elapsed = time.perf_counter() - started
    return out


def _request_worker(spec: RequestClient, barrier: Barrier, results: mp.Queue[Any]) -> None:
    try:
        results.put(("ok", asyncio.run(_requests(spec, barrier))))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


def run_requests(
    kind: str,
    base_url: str,
    token: str,
    *,
    processes: int,
    connections: int,
    duration_s: float,
    server_pid: int,
    subscriptions: Sequence[str] = (),
    key_prefix: str = "single",
) -> Timed:
    """`processes` × `connections` concurrent loops for `duration_s`; results summed."""
    total = processes * connections
    specs = [
        RequestClient(
            kind=kind,
            base_url=base_url,
            token=token,
            duration_s=duration_s,
            connections=connections,
            first_loop=p * connections,
            total_loops=total,
            subscriptions=tuple(subscriptions),
            key_prefix=key_prefix,
        )
        for p in range(processes)
    ]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results: mp.Queue[Any] = ctx.Queue()
    workers = [
        ctx.Process(target=_request_worker, args=(s, barrier, results), daemon=True) for s in specs
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(BARRIER_TIMEOUT_S)
    except Exception as exc:
        raise RuntimeError(f"a client failed:\n{_first_error(results, processes)}") from exc
    cpu_before = cpu_seconds(server_pid)
    total_result = StepResult()
    for _ in specs:
        status, payload = results.get(timeout=duration_s + BARRIER_TIMEOUT_S)
        if status != "ok":
            raise RuntimeError(f"a client failed:\n{payload}")
        total_result.merge(payload)
    cpu = cpu_seconds(server_pid) - cpu_before
    for worker in workers:
        worker.join(timeout=60)
    return Timed(total_result.elapsed, total_result, cpu)
