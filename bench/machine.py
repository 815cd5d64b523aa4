"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from bench.databases import NoPostgres, libpq_url, postgres_server_url


def _first(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _postgres() -> dict[str, Any] | None:
    try:
        url = libpq_url(postgres_server_url())
    except NoPostgres:
        return None
    with psycopg.connect(url) as conn:
        found: dict[str, Any] = {}
        for setting in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
            row = conn.execute(f"SHOW {setting}").fetchone()
            found[setting] = None if row is None else row[0]
        return found


def describe() -> dict[str, Any]:
    mem_kib = _first("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_mib": int(mem_kib.split()[0]) // 1024 if mem_kib else None,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres(),
        "load_average_at_start": load_average(),
        "commit": _commit(),
    }


def _commit() -> str:
    """The product's commit the figures belong to, `+dirty` when the tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_average() -> str:
    """Other work on the machine skews every figure: recorded beside them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def one_line(machine: dict[str, Any]) -> str:
    pg = machine.get("postgresql") or {}
    return (
        f"{machine['cores_usable']} cores ({machine['cpu_model']}), "
        f"{machine['memory_mib']} MiB, Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"PostgreSQL {pg.get('server_version', 'n/a')} (fsync={pg.get('fsync', 'n/a')}, "
        f"synchronous_commit={pg.get('synchronous_commit', 'n/a')})"
    )
