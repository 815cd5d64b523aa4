"""Single-request load from wrk: one Lua script per call, verified against the ledger after.

wrk (C, one event loop per thread) drives 64 connections with a fraction of the CPU that Python
clients need, so on a 2-core machine the server, not the load generator, is what is measured.

Every request is deterministic in (wrk thread, request number), so the events sent can be
recomputed here from the number of requests each thread sent. For that to be exact, nothing may
be in flight when wrk stops: each thread sends for `duration_s` (by its own monotonic clock),
then its connections go quiet (`delay()` answers an hour) while the last answers come back in
the `tail_s` that wrk keeps running. A request still unanswered at the end fails the run, as
does any answer other than success (a GraphQL error inside a 200 included).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import cpu_seconds
from bench.workload import METERS, Expected

WRK = "/usr/bin/wrk"
STEP_US = 1_000  # a thread's events are dated 1 ms apart, in the order it sends them
MARKER = "BENCH_RESULT "


def available() -> bool:
    return Path(WRK).exists() or shutil.which("wrk") is not None


def _wrk_command() -> str:
    return WRK if Path(WRK).exists() else "wrk"


@dataclass(frozen=True, slots=True)
class Target:
    """What one call kind needs: credentials, subscriptions and the dates to use."""

    token: str
    subscriptions: tuple[str, ...]
    first_us: int  # the first event's instant; later ones follow STEP_US apart per thread
    key_prefix: str
    partner_key: str = ""  # Gradient
    gradient_token: str = ""  # base64 of "<api token>:<partner key>"
    saaslogic_token: str = ""  # a JWT from POST /saaslogic/v1/token


@dataclass(frozen=True, slots=True)
class Call:
    """One kind of single-usage call: its Lua request builder and the same event in Python."""

    name: str
    label: str
    lua: str  # defines `build(t, n)` returning wrk.format(...) and `ok(status, body)`
    event: Callable[[Target, int, int, int], dict[str, Any] | None]  # (target, T, t, n)


# --- the calls --------------------------------------------------------------------------------


def _owned(target: Target, threads: int, t: int, n: int) -> tuple[int, str]:
    """(global subscription index, id) of request n of thread t: threads own every T-th one."""
    owned = len(range(t - 1, len(target.subscriptions), threads))
    index = (t - 1) + threads * (n % owned)
    return index, target.subscriptions[index]


def _native_event(target: Target, threads: int, t: int, n: int) -> dict[str, Any]:
    owned = len(range(t - 1, len(target.subscriptions), threads))
    _, sub = _owned(target, threads, t, n)
    key, aggregation, _ = METERS[(n // owned) % len(METERS)]
    return {
        "subscription_id": sub,
        "meter": key,
        "quantity": "1.25" if aggregation == "sum" else str(1 + (n * 7919) % 50),
    }


def _counter_event(target: Target, threads: int, t: int, n: int) -> dict[str, Any]:
    _, sub = _owned(target, threads, t, n)
    return {"subscription_id": sub, "meter": "bench_calls", "quantity": str(1 + n % 5)}


def _gauge_event(target: Target, threads: int, t: int, n: int) -> dict[str, Any]:
    _, sub = _owned(target, threads, t, n)
    return {"subscription_id": sub, "meter": "bench_storage", "quantity": str(1 + (n * 7919) % 50)}


def _nothing(target: Target, threads: int, t: int, n: int) -> None:
    return None


# Lua helpers shared by the calls: `owned(t, n)` mirrors _owned above (1-based Lua arrays).
_LUA_COMMON = r"""
local function owned(t, n)
  local count = 0
  for i = t, #subs, threads do count = count + 1 end
  local index = (t - 1) + threads * (n % count)
  return index, subs[index + 1], count
end
local function instant(n)
  local us = first_us + n * step_us
  local seconds = math.floor(us / 1000000)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%06dZ", us - seconds * 1000000)
end
"""

HEALTHZ = Call(
    "healthz",
    "GET /healthz (floor)",
    r"""
local function build(t, n) return wrk.format("GET", "/healthz") end
local function ok(status, body) return status == 200 end
""",
    _nothing,
)

NATIVE = Call(
    "native",
    "native: POST /v1/events (1 event)",
    r"""
local meters = {"bench_calls", "bench_storage", "bench_seats"}
local function build(t, n)
  local _, sub, count = owned(t, n)
  local m = math.floor(n / count) % 3
  local body
  if m == 0 then
    body = string.format('{"events":[{"idempotency_key":"%s-%d-%d","subscription_id":"%s",'
      .. '"meter":"bench_calls","timestamp":"%s","quantity":"1.25"}]}',
      key_prefix, t, n, sub, instant(n))
  else
    body = string.format('{"events":[{"idempotency_key":"%s-%d-%d","subscription_id":"%s",'
      .. '"meter":"%s","timestamp":"%s","operation":"set","quantity":"%d"}]}',
      key_prefix, t, n, sub, meters[m + 1], instant(n), 1 + (n * 7919) % 50)
  end
  return wrk.format("POST", "/v1/events",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
local function ok(status, body)
  return status == 200 and body:find('"accepted":1', 1, true) ~= nil
end
""",
    _native_event,
)

SALESBRICKS = Call(
    "salesbricks",
    "Salesbricks: GraphQL incrementCounter",
    r"""
local query = "mutation Increment($timestamp: DateTime!, $subscriptionId: String!, "
  .. "$brickId: String!, $count: Int!) { incrementCounter(timestamp: $timestamp, "
  .. "subscriptionId: $subscriptionId, brickId: $brickId, count: $count) { success } }"
local function build(t, n)
  local _, sub = owned(t, n)
  local body = string.format('{"query":"%s","variables":{"timestamp":"%s",'
    .. '"subscriptionId":"%s","brickId":"bench_calls","count":%d}}',
    query, instant(n), sub, 1 + n % 5)
  return wrk.format("POST", "/salesbricks/api/v1/usage",
    {["X-SALESBRICKS-KEY"] = token, ["Content-Type"] = "application/json"}, body)
end
local function ok(status, body)
  return status == 200 and body:find('"success":true', 1, true) ~= nil
end
""",
    _counter_event,
)

GRADIENT = Call(
    "gradient",
    "Gradient: set unit count",
    r"""
local function build(t, n)
  local index = owned(t, n)
  return wrk.format("POST", "/gradient/api/vendor-api/service/bench_storage/count",
    {["GRADIENT-TOKEN"] = gradient_token, ["Content-Type"] = "application/json"},
    string.format('{"accountId":"bench-%d","unitCount":%d}', index, 1 + (n * 7919) % 50))
end
local function ok(status, body) return status == 201 end
""",
    _gauge_event,
)

SAASLOGIC = Call(
    "saaslogic",
    "Saaslogic: POST /subscriptions/{id}/resources",
    r"""
local function build(t, n)
  local _, sub = owned(t, n)
  return wrk.format("POST", "/saaslogic/v1/subscriptions/" .. sub .. "/resources",
    {["Authorization"] = "Bearer " .. saaslogic_token, ["Content-Type"] = "application/json"},
    string.format('{"usageDate":"%s","reportingType":"Add",'
      .. '"usageDetails":[{"resourceId":"bench_calls","value":%d}]}', instant(n), 1 + n % 5))
end
local function ok(status, body) return status == 200 end
""",
    _counter_event,
)

CALLS: dict[str, Call] = {c.name: c for c in (HEALTHZ, NATIVE, SALESBRICKS, GRADIENT, SAASLOGIC)}
FACADES = ("salesbricks", "gradient", "saaslogic")


# --- the script ---------------------------------------------------------------------------------

_LUA_RUNNER = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *ts);
]]
local clock = ffi.new("bench_timespec")
local function now_s()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

local threads_list = {}
local next_tid = 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads_list, thread)
end

local deadline = nil
sent, answered, good, bad, first_bad = 0, 0, 0, 0, ""

function init(args)
  deadline = now_s() + duration_s
end

function delay()
  if now_s() >= deadline then return 3600000 end  -- quiet from here on: nothing left in flight
  return 0
end

-- wrk builds one request on its first thread's state before it starts, only to check the
-- script (script_verify_request); that one is never sent, so it takes no number. Were that to
-- change, thread 1 would answer one more request than it counts, and the run would fail.
local checked = false
function request()
  if tid == 1 and not checked then
    checked = true
    return build(tid, -1)
  end
  local n = sent
  sent = sent + 1
  return build(tid, n)
end

function response(status, headers, body)
  answered = answered + 1
  if ok(status, body) then
    good = good + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

local function quote(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads_list) do
    table.insert(parts, string.format(
      '{"tid":%d,"sent":%d,"answered":%d,"good":%d,"bad":%d,"first_bad":%s}',
      thread:get("tid"), thread:get("sent"), thread:get("answered"), thread:get("good"),
      thread:get("bad"), quote(thread:get("first_bad"))))
  end
  io.write(string.format(
    '%s{"requests":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"threads":[%s]}\n',
    marker, summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(parts, ",")))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string literal for these values


def script(call: Call, target: Target, *, threads: int, duration_s: float) -> str:
    subs = ", ".join(_lua_string(s) for s in target.subscriptions)
    constants = "\n".join(
        [
            f"threads = {threads}",
            f"duration_s = {duration_s}",
            f"first_us = {target.first_us}",
            f"step_us = {STEP_US}",
            f"marker = {_lua_string(MARKER)}",
            f"key_prefix = {_lua_string(target.key_prefix + '-' + call.name)}",
            f"token = {_lua_string(target.token)}",
            f"gradient_token = {_lua_string(target.gradient_token)}",
            f"saaslogic_token = {_lua_string(target.saaslogic_token)}",
            f"subs = {{{subs}}}",
        ]
    )
    return "\n".join([constants, _LUA_COMMON, call.lua, _LUA_RUNNER])


# --- running it ---------------------------------------------------------------------------------


class WrkFailed(RuntimeError):
    pass


@dataclass(slots=True)
class WrkResult:
    call: str
    requests: int
    seconds: float  # the sending window (each thread's duration_s)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    per_thread: list[int] = field(default_factory=list)  # requests sent by thread 1, 2, …
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(1, self.requests) * 1e6

    def summary(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests_per_s),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "server_cpu_us_per_request": round(self.server_cpu_us_per_request),
            "load_average": self.load_average,
        }


def _load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def run(
    call: Call,
    base_url: str,
    target: Target,
    *,
    workdir: Path,
    server_pid: int,
    threads: int,
    connections: int,
    duration_s: float,
    tail_s: float,
) -> WrkResult:
    """Run one call under wrk; raise WrkFailed on any failed or unanswered request."""
    path = workdir / f"wrk-{call.name}.lua"
    path.write_text(script(call, target, threads=threads, duration_s=duration_s))
    command = [
        _wrk_command(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s + tail_s:.0f}s",
        "--timeout",
        f"{max(30.0, tail_s):.0f}s",
        "-s",
        str(path),
        base_url,
    ]
    # The server's CPU over the sending window only: once it ends, the server starts work that
    # follows a burst (billing views are rebuilt once writes stop) which is not this call's.
    cpu: list[float] = []

    def sample() -> None:
        cpu.append(cpu_seconds(server_pid))
        time.sleep(duration_s)
        cpu.append(cpu_seconds(server_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    load_before = _load_average()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler.start()
    out, err = process.communicate(timeout=duration_s + tail_s + 120)
    sampler.join()
    if process.returncode != 0:
        raise WrkFailed(f"wrk failed ({process.returncode}): {err}\n{out}")
    match = re.search(re.escape(MARKER) + r"(\{.*\})", out)
    if match is None:
        raise WrkFailed(f"no result from the wrk script:\n{out}\n{err}")
    data = json.loads(match.group(1))
    per_thread = sorted(data["threads"], key=lambda item: item["tid"])
    sent = sum(item["sent"] for item in per_thread)
    answered = sum(item["answered"] for item in per_thread)
    bad = sum(item["bad"] for item in per_thread)
    # A read error is also how wrk sees the server close a connection that sat idle past its
    # keep-alive timeout in the tail; a request lost that way is caught as unanswered below.
    errors = {name: n for name, n in data["errors"].items() if n and name != "read"}
    if bad or errors:
        firsts = [item["first_bad"] for item in per_thread if item["first_bad"]]
        raise WrkFailed(f"{call.name}: {bad} failed answers, errors {errors}; first: {firsts[:2]}")
    if answered != sent:
        raise WrkFailed(
            f"{call.name}: {sent - answered} of {sent} requests were unanswered when wrk stopped "
            f"(still in flight after the {tail_s:.0f} s tail: raise it)"
        )
    latency = data["latency_us"]
    return WrkResult(
        call=call.name,
        requests=sent,
        seconds=duration_s,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        server_cpu_s=cpu[1] - cpu[0],
        per_thread=[item["sent"] for item in per_thread],
        load_average=load_before,
    )


def expected(call: Call, target: Target, result: WrkResult, threads: int) -> Expected:
    """The events the ledger must hold after `result`: every request of every thread."""
    out = Expected()
    for t, sent in enumerate(result.per_thread, start=1):
        for n in range(sent):
            event = call.event(target, threads, t, n)
            if event is not None:
                out.add(event)
    return out
