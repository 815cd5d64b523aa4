"""Read latency from wrk: GET of random subscriptions' usage or invoice preview, and /healthz.

The Python clients of bench/load.py add milliseconds of their own to every request on a 2-core
machine; wrk adds a few microseconds, so its percentiles are the server's. Reads change nothing,
so there is nothing to verify afterwards beyond every answer being a 200.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.load import cpu_seconds
from bench.wrk import _wrk_command, available

__all__ = ["available", "measure"]

_SCRIPT = """
local subs = {%(subs)s}
local token = "%(token)s"
local kind = "%(kind)s"
math.randomseed(%(seed)d)
request = function()
  local path = "/healthz"
  if kind ~= "healthz" then
    path = "/v1/subscriptions/" .. subs[math.random(#subs)] .. "/" .. kind
  end
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
done = function(summary, latency, requests)
  -- errors.status counts answers of 400 and above.
  io.write(string.format("READS %%d %%d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
  for _, p in ipairs({50, 90, 99}) do
    io.write(string.format("PCT %%d %%d\\n", p, latency:percentile(p)))
  end
end
"""


def measure(
    kind: str,
    base_url: str,
    token: str,
    subscriptions: list[str],
    *,
    connections: int,
    duration_s: float,
    server_pid: int,
) -> dict[str, Any]:
    """`kind`: usage, invoice-preview or healthz. Raises if any request failed."""
    subs = ", ".join(f'"{s}"' for s in subscriptions)
    text = _SCRIPT % {"subs": subs, "token": token, "kind": kind, "seed": 7}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(text)
        path = Path(handle.name)
    threads = min(2, connections)
    try:
        before = cpu_seconds(server_pid)
        done = subprocess.run(
            [_wrk_command(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
             "--timeout", "10s", "-s", str(path), base_url],
            capture_output=True, text=True, check=False, timeout=duration_s + 60,
        )  # fmt: skip
        cpu = cpu_seconds(server_pid) - before
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    finally:
        path.unlink(missing_ok=True)
    # done() runs once, with the summary of every thread.
    found = re.search(r"^READS (\d+) (\d+)$", done.stdout, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")
    requests, errors = (int(g) for g in found.groups())
    if errors:
        raise RuntimeError(f"wrk {kind}: {errors} failed requests (errors or 4xx/5xx answers)")
    pct = {int(p): int(us) / 1000 for p, us in re.findall(r"^PCT (\d+) (\d+)$", done.stdout, re.M)}
    return {
        "read": kind,
        "connections": connections,
        "requests": requests,
        "requests_per_s": round(requests / max(1, round(duration_s))),
        "p50_ms": round(pct[50], 2),
        "p90_ms": round(pct[90], 2),
        "p99_ms": round(pct[99], 2),
        "server_cpu_us_per_request": round(cpu / max(1, requests) * 1e6),
    }
