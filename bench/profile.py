"""Where the server's time goes under batched ingestion: `python -m bench.profile`.

Starts the server as the benchmarks do, attaches py-spy (`pip install py-spy`; not a project
dependency, a diagnosis tool) to it while client processes send batches, and sorts the samples
of every server thread into the stages of the ingestion path. The raw profile is kept in
bench/results/ for flame graphs (e.g. speedscope, or `py-spy record --format flamegraph`).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.databases import DIALECTS, fresh_database
from bench.load import BatchClient, run_batches, run_requests
from bench.report import RESULTS, markdown
from bench.server import ServerProcess
from bench.tenant import build_tenant
from bench.workload import streams

# (stage, function, file): a sample belongs to the stage of the deepest matching frame on its
# stack. A function matches its bare or qualified name; an empty function matches any frame
# from that file (path fragment).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("HTTP server and framework", "", "uvicorn/"),
    ("HTTP server and framework", "", "starlette/"),
    ("HTTP server and framework", "", "fastapi/"),
    ("authentication", "organization_for_token", ""),
    ("JSON parsing of the body", "parse_body", ""),
    ("validation: decoding the body into drafts", "decode_batch", ""),
    ("validation: per-event parsing", "parse_event", ""),
    ("validation: lookups (meters, subscriptions)", "prepare_batch", ""),
    ("validation: payload hash", "payload_hash", ""),
    ("writer: other", "_write", "meterworks/usage/writer.py"),
    ("writer: sequence lock", "lock_sequence", ""),
    ("writer: dedupe lookup", "known_hashes", ""),
    ("writer: event INSERT", "append", "meterworks/usage/ledger.py"),
    ("writer: rollup update", "update_rollups", ""),
    ("writer: out-of-order rebuild", "rebuild_pair", ""),
    ("writer: commit (fsync)", "_commit_impl", "sqlalchemy/engine/base.py"),
    ("writer: commit (fsync)", "do_commit", ""),
    ("billing: view rebuilds (own thread)", "rebuild_due_views", ""),
)
# Which thread a sample ran on, by a frame only that thread has.
THREADS: tuple[tuple[str, str], ...] = (
    ("ledger writer thread", "LedgerWriter._run"),
    ("billing views thread", "rebuild_due_views"),
    ("request worker threads", "_worker (concurrent/futures/thread.py"),
)


def _frame(frame: str) -> tuple[str, str]:
    name, _, where = frame.partition(" (")
    return name.strip(), where


def stage_of(stack: str) -> str:
    found = "other (event loop, idle waits)"
    for frame in stack.split(";"):
        name, where = _frame(frame)
        short = name.rsplit(".", 1)[-1]
        for stage, function, path in STAGES:
            if function and function not in (name, short):
                continue
            if path and path not in where:
                continue
            found = stage
    return found


def thread_of(stack: str) -> str:
    for thread, marker in THREADS:
        if marker in stack:
            return thread
    return "event loop thread"


def leaf(stack: str) -> str:
    return stack.rsplit(";", 1)[-1]


def summarize(raw: Path, seconds: float, rate: int) -> tuple[str, str, str, int]:
    stages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        stages[stage_of(stack)] += count
        threads[thread_of(stack)] += count
        leaves[leaf(stack)] += count
    stage_table = markdown(
        ("stage", "samples", "share"),
        [[s, n, f"{100 * n / total:.1f} %"] for s, n in stages.most_common()],
    )
    # A thread sampled in every tick of the run was never idle: a serial bottleneck.
    thread_table = markdown(
        ("thread", "samples", "busy (share of the run's wall time)"),
        [[t, n, f"{100 * n / (rate * seconds):.0f} %"] for t, n in threads.most_common()],
    )
    leaf_table = markdown(
        ("function (self time)", "samples", "share"),
        [[f, n, f"{100 * n / total:.1f} %"] for f, n in leaves.most_common(25)],
    )
    return stage_table, thread_table, leaf_table, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--dialect", choices=DIALECTS, default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument(
        "--single",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="profile single-event requests from 64 connections for SECONDS instead",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="meterworks-profile-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    shape = f"single-{args.single:g}s" if args.single else str(args.batch)
    raw = RESULTS / f"profile-{args.dialect}-{shape}.txt"
    run_id = secrets.token_hex(3)
    log = workdir / "server.log"
    with fresh_database(args.dialect, workdir, "profile") as url, ServerProcess(url, log) as srv:
        tenant = build_tenant(url, srv.base_url, f"profile {run_id}", args.subscriptions)
        first, last = tenant.window_us()
        parts = streams(run_id, tenant.subscriptions, args.clients, args.events, first, last)
        clients = [BatchClient(srv.base_url, tenant.token, ((s, args.batch),), (0,)) for s in parts]
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(srv.pid), "--threads", "--rate", str(args.rate),
             "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.0)
        if args.single:
            timed = run_requests(
                "event", srv.base_url, tenant.token, processes=4, connections=16,
                duration_s=args.single, server_pid=srv.pid, subscriptions=tenant.subscriptions,
                key_prefix=run_id,
            )  # fmt: skip
            what = f"{timed.result.requests:,} single-event requests"
            count = timed.result.requests
        else:
            (timed,) = run_batches(clients, srv.pid)
            what = f"{args.events:,} events in batches of {args.batch:,}"
            count = args.events
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    shutil.rmtree(workdir, ignore_errors=True)
    stage_table, thread_table, leaf_table, total = summarize(raw, timed.seconds, args.rate)
    print(
        f"{args.dialect}, {what}: {count / timed.seconds:,.0f} events/s, server CPU "
        f"{timed.server_cpu_s:.1f} s ({timed.server_cpu_s / count * 1e6:,.0f} µs/event); "
        f"{total:,} samples at {args.rate}/s over all server threads (raw: {raw})\n"
    )
    print(stage_table, "\n")
    print(thread_table, "\n")
    print(leaf_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
