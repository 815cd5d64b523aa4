"""`python -m bench [NAME ...]`: run benchmarks (default: the whole suite) and report them."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import ingest, invoice, machine, reads, report, single
from bench.databases import DIALECTS, NoPostgres, postgres_server_url


def _dialects(wanted: str) -> list[str]:
    if wanted != "both":
        if wanted == "postgresql":
            postgres_server_url()
        return [wanted]
    try:
        postgres_server_url()
    except NoPostgres as exc:
        print(f"note: PostgreSQL skipped. {exc}", file=sys.stderr)
        return ["sqlite"]
    return list(DIALECTS)


def _ingest(args: argparse.Namespace, dialects: list[str], workdir: Path) -> str:
    scale = args.scale
    options = ingest.IngestOptions(
        subscriptions=args.subscriptions or 100,
        clients=args.clients,
        small_events=int(100_000 * scale),
        large_events=int(100_000 * scale),
    )
    runs = _runs("ingest", ingest.run, dialects, workdir, options)
    rows = [row for run in runs for row in ingest.table_rows(run)]
    table = report.markdown(ingest.COLUMNS, rows)
    _save("ingest", {"options": asdict(options), "runs": runs, "table": table})
    return table


_machine: dict[str, Any] = {}


def _runs(
    name: str,
    run: Callable[[str, Path, Any], dict[str, Any]],
    dialects: list[str],
    workdir: Path,
    options: Any,
    said: Callable[[dict[str, Any]], str] = lambda result: str(result["verified"]),
) -> list[dict[str, Any]]:
    """One run of a benchmark per dialect, each announced and its verification printed."""
    runs = []
    for dialect in dialects:
        print(f"{name} on {dialect}: {options}", file=sys.stderr)
        result = run(dialect, workdir, options)
        print(f"  {said(result)}", file=sys.stderr)
        runs.append(result)
    return runs


def _save(name: str, payload: dict[str, Any]) -> None:
    finished = {"load_average_at_end": machine.load_average()}
    path = report.write(name, {"machine": _machine, **finished, **payload})
    print(f"  wrote {path}", file=sys.stderr)


def _single(args: argparse.Namespace, dialects: list[str], workdir: Path) -> str:
    options = single.SingleOptions(duration_s=args.duration)
    runs = _runs("single events", single.run, dialects, workdir, options)
    table = report.markdown(single.COLUMNS, [r for run in runs for r in single.table_rows(run)])
    _save("single", {"options": asdict(options), "runs": runs, "table": table})
    return table


def _reads(args: argparse.Namespace, dialects: list[str], workdir: Path) -> str:
    options = reads.ReadsOptions(events=args.read_events, duration_s=args.duration * 2 / 3)
    runs = _runs(
        "reads",
        reads.run,
        dialects,
        workdir,
        options,
        lambda result: (
            f"filled {result['events_stored']} events at {result['fill_events_per_s']}/s; "
            f"{result['verified']}; server idle {result['settled_after_fill_s']} s later"
        ),
    )
    table = report.markdown(reads.COLUMNS, [r for run in runs for r in reads.table_rows(run)])
    by_wrk = [r for run in runs for r in reads.wrk_rows(run)]
    if by_wrk:
        table += "\n\nThe same reads from wrk (its latency is the server's):\n\n"
        table += report.markdown(reads.WRK_COLUMNS, by_wrk)
    _save("reads", {"options": asdict(options), "runs": runs, "table": table})
    return table


def _invoice(args: argparse.Namespace, dialects: list[str], workdir: Path) -> str:
    options = invoice.InvoiceOptions(
        subscriptions=args.subscriptions or 100_000,
        events_per_subscription=args.events_per_subscription,
        profile=args.profile,
    )
    runs = _runs("invoice run", invoice.run, dialects, workdir, options)
    rows = [row for run in runs for row in invoice.table_rows(run)]
    table = report.markdown(invoice.COLUMNS, rows)
    _save("invoice", {"options": asdict(options), "runs": runs, "table": table})
    return table


BENCHMARKS: dict[str, Callable[[argparse.Namespace, list[str], Path], str]] = {
    "ingest": _ingest,
    "single": _single,
    "reads": _reads,
    "invoice": _invoice,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHMARKS, []],
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--dialect", choices=["both", *DIALECTS], default="both")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the event counts (0.1 for a quick smoke run)")  # fmt: skip
    parser.add_argument(
        "--subscriptions", type=int, help="subscriptions (default: ingest 100, invoice 100,000)"
    )
    parser.add_argument(
        "--events-per-subscription", type=int, default=6,
        help="invoice: events per subscription in the closed period (a multiple of 3)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="invoice: run the billing run under py-spy (bench/results/profile-invoice-*.txt)",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="ingest: client processes")
    parser.add_argument(
        "--duration", type=float, default=15.0, help="seconds per measured request load"
    )
    parser.add_argument(
        "--read-events", type=int, default=100_000, help="events stored before the reads"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="server processes (`meterworks serve --workers`; default: one per core)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    # Read by the server's settings (bench/server.py passes the environment on).
    os.environ["METERWORKS_WORKERS"] = str(args.workers)
    dialects = _dialects(args.dialect)
    _machine.update(machine.describe(), server_workers=args.workers)
    print(f"machine: {machine.one_line(_machine)}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="meterworks-bench-"))
    started = time.monotonic()
    failed = False
    try:
        for name in names:
            print(f"\n## {name}\n\n{BENCHMARKS[name](args, dialects, workdir)}\n", flush=True)
    except BaseException:
        failed = True
        print(f"\nbenchmark failed; server logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if not failed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"machine: {machine.one_line(_machine)}, commit {_machine['commit']}")
    print(
        f"load average (1, 5, 15 min) at start {_machine['load_average_at_start']}, "
        f"at end {machine.load_average()}; suite took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
