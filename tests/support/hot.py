"""A call answered below the framework (api/hot.py) against the same call through its route."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Sent:
    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Answered:
    status: int
    text: str
    header: str | None  # the value of the header the comparison names, if sent


def answered_both_ways(
    calls: Sequence[Sent], *, route_query: str, header: str, reached: Sized, reaching: int
) -> dict[str, Answered]:
    """The layer's answers, by name, once every call was answered alike both ways.

    Each call is sent as it is, which the layer answers, then with `route_query` added (FastAPI
    ignores the parameter, the layer passes any query on), which the route answers. `{}` in a
    call's headers or body becomes `layer` or `route`, so that keys can differ by path; in the
    answer to such a call, that word becomes `{}` again. `reached` (what the layer's answer
    function has seen) must grow by `reaching` calls in the layer's round, and not in the
    route's.
    """
    answers: dict[str, list[Answered]] = {}
    for via, query in (("layer", ""), ("route", route_query)):
        for call in calls:
            marked = b"{}" in call.body or any("{}" in v for v in call.headers.values())
            response = httpx.request(
                call.method,
                call.url + query,
                content=call.body.replace(b"{}", via.encode()),
                headers={k: v.replace("{}", via) for k, v in call.headers.items()},
                timeout=30,
            )
            text = response.text.replace(via, "{}") if marked else response.text
            answers.setdefault(call.name, []).append(
                Answered(response.status_code, text, response.headers.get(header))
            )
        assert len(reached) == reaching, f"{via}: {len(reached)} calls reached the layer"
    for name, (layer, route) in answers.items():
        assert layer == route, name
    return {name: layer for name, (layer, _) in answers.items()}
