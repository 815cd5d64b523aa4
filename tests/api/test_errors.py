"""The native error shape at the edges: unknown routes, bad JSON, oversized bodies, odd text."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from meterworks.db import tables as t
from tests.api.builders import Api, error_of


def test_unknown_routes_and_methods(api: Api) -> None:
    assert error_of(api.client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(api.client.put("/v1/meters"), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/meters", "/v1/plans", "/v1/subscriptions"])
def test_a_body_that_is_not_json_is_400_everywhere(api: Api, path: str) -> None:
    for body in (b"{not json", b'{"name": NaN}', b"[" * 50_000 + b"]" * 50_000):
        error = error_of(api.client.post(path, content=body), 400)
        assert error["code"] in {"invalid_json", "bad_request"}, error
    assert error_of(api.client.post(path, content=b"{oops"), 400)["code"] == "invalid_json"


def test_an_oversized_body_is_413_on_routes_with_a_declared_body(api: Api) -> None:
    big = {"external_id": "e", "name": "n", "metadata": {"blob": "x" * (8 * 1024 * 1024)}}
    assert error_of(api.client.post("/v1/customers", json=big), 413)["code"] == (
        "payload_too_large"
    )

    def chunks() -> Iterator[bytes]:
        yield b'{"external_id": "e", "name": "n", "metadata": {"blob": "'
        for _ in range(9):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    assert error_of(api.client.post("/v1/customers", content=chunks()), 413)["code"] == (
        "payload_too_large"
    )
    assert api.rows(t.customers) == 0


@pytest.mark.parametrize("text", ["nul\x00inside", "\ud800", "x\udfff"])
def test_text_no_database_can_store_is_refused(api: Api, text: str) -> None:
    body = json.dumps({"external_id": "e", "name": text}, ensure_ascii=True)
    assert error_of(api.client.post("/v1/customers", content=body), 400)["code"] == "invalid_text"
    body = json.dumps({"external_id": text, "name": "n"}, ensure_ascii=True)
    assert error_of(api.client.post("/v1/customers", content=body), 400)["code"] == "invalid_text"
    setup = api.metered("sum")
    event = {
        "idempotency_key": text,
        "subscription_id": setup.id,
        "meter": setup.key("sum"),
        "timestamp": "2025-01-02T00:00:00Z",
        "quantity": 1,
    }
    body = json.dumps({"events": [event]}, ensure_ascii=True)
    assert error_of(api.client.post("/v1/events", content=body), 400)["code"] == "invalid_text"
    nested = {**event, "idempotency_key": "ok", "properties": {"deep": [{text: 1}]}}
    body = json.dumps({"events": [nested]}, ensure_ascii=True)
    assert error_of(api.client.post("/v1/events", content=body), 400)["code"] == "invalid_text"
    assert api.rows(t.customers) == 1  # the metered setup's own
    assert api.ledger_rows() == 0


def test_a_nul_in_an_id_or_a_query_value_is_refused(api: Api) -> None:
    for path in ("/v1/meters/a%00b", "/v1/customers/a%00b", "/v1/subscriptions/x%00/usage"):
        assert error_of(api.client.get(path), 400)["code"] == "invalid_text"
    response = api.client.get("/v1/customers", params={"after": "a\x00b"})
    assert error_of(response, 400)["code"] == "invalid_text"
    assert error_of(api.client.delete("/v1/events/k%00"), 400)["code"] == "invalid_text"


def test_the_openapi_document_and_docs_page_are_served(api: Api) -> None:
    document = api.client.get("/openapi.json")
    assert document.status_code == 200, document.text
    paths = document.json()["paths"]
    for path in (
        "/v1/meters",
        "/v1/plans",
        "/v1/customers",
        "/v1/customers/{customer_id}",
        "/v1/subscriptions",
        "/v1/subscriptions/{subscription_id}/usage",
        "/v1/events",
        "/v1/events/{idempotency_key}",
        "/v1/partners",
    ):
        assert path in paths, path
    assert "requestBody" in paths["/v1/events"]["post"]
    assert api.client.get("/docs").status_code == 200
