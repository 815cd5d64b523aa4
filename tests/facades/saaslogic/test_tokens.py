"""Tokens: access key and secret key for a signed, expiring bearer JWT; every call needs one."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from meterworks.app import build_context
from meterworks.db import tables as t
from meterworks.errors import Unauthorized
from meterworks.facades.saaslogic.tokens import TokenService
from tests.facades.saaslogic.support import NOW, PREFIX, Merchant, subscribe
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization, new_organization


def url(server: RunningServer, path: str) -> str:
    return f"{server.base_url}{PREFIX}{path}"


def read_subscription(server: RunningServer, subscription_id: str, token: str) -> httpx.Response:
    return httpx.get(
        url(server, f"/subscriptions/{subscription_id}"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_post_token_answers_a_bearer_jwt_for_the_key(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = httpx.post(
        url(merchant.server, "/token"),
        json={"accessKey": merchant.access_key, "secretKey": merchant.secret_key},
        timeout=30,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"accessToken", "tokenType", "expiresIn", "expiresAt"}
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 3600
    assert body["expiresAt"] == "2024-07-26T01:00:00"
    claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
    assert jwt.get_unverified_header(body["accessToken"])["alg"] == "HS256"
    assert claims["org"] == merchant.org.id
    assert claims["sub"] == merchant.access_key
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == int(NOW.timestamp())
    read = read_subscription(merchant.server, scene.subscription_id, body["accessToken"])
    assert read.status_code == 200
    assert read.json()["subscriptionId"] == scene.subscription_id


def test_the_legacy_get_answers_the_jwt_as_plain_text(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = httpx.get(
        url(
            merchant.server,
            f"/accesskey/{merchant.access_key}/secretkey/{merchant.secret_key}/token",
        ),
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    token = answer.text
    assert token.count(".") == 2
    assert jwt.decode(token, options={"verify_signature": False})["org"] == merchant.org.id
    assert read_subscription(merchant.server, scene.subscription_id, token).status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"accessKey": "key_unknown", "secretKey": "whatever"},
        {"accessKey": "", "secretKey": ""},
        {"accessKey": "a.b", "secretKey": "c"},
    ],
)
def test_wrong_keys_get_no_token(merchant: Merchant, credentials: dict[str, str]) -> None:
    answer = httpx.post(url(merchant.server, "/token"), json=credentials, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["message"] == "UN_AUTHORIZED"


def test_a_wrong_secret_gets_no_token_on_either_endpoint(merchant: Merchant) -> None:
    answer = httpx.post(
        url(merchant.server, "/token"),
        json={"accessKey": merchant.access_key, "secretKey": merchant.secret_key + "x"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert answer.json()["message"] == "UN_AUTHORIZED"
    legacy = httpx.get(
        url(merchant.server, f"/accesskey/{merchant.access_key}/secretkey/nope/token"), timeout=30
    )
    assert legacy.status_code == 401
    assert legacy.json()["message"] == "UN_AUTHORIZED"


def test_a_token_request_without_both_keys_is_400(merchant: Merchant) -> None:
    answer = httpx.post(
        url(merchant.server, "/token"), json={"accessKey": merchant.access_key}, timeout=30
    )
    assert answer.status_code == 400
    assert answer.json()["message"] == "INVALID_REQUEST"
    assert answer.json()["errors"][0]["field"] == "secretKey"


def test_a_token_stops_working_when_it_expires(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    token = merchant.client.headers["Authorization"].removeprefix("Bearer ")
    merchant.server.clock.set(NOW + timedelta(seconds=3599))
    assert read_subscription(merchant.server, scene.subscription_id, token).status_code == 200
    merchant.server.clock.set(NOW + timedelta(seconds=3600))
    expired = read_subscription(merchant.server, scene.subscription_id, token)
    assert expired.status_code == 401
    assert expired.json()["message"] == "UN_AUTHORIZED"
    assert expired.headers["www-authenticate"] == "Bearer"


def test_bad_bearer_tokens_are_401(merchant: Merchant, org: IsolatedOrganization) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    good = merchant.client.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "a key of 32 bytes or more, not ours", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for header in (
        None,
        "",
        "Bearer",
        "Basic " + good,
        "Bearer garbage",
        f"Bearer {forged}",
        f"Bearer {unsigned}",
        f"Bearer {org.token}",  # a native API key is not a Saaslogic token
    ):
        headers = {} if header is None else {"Authorization": header}
        answer = httpx.get(
            url(merchant.server, f"/subscriptions/{scene.subscription_id}"),
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 401, header
        assert answer.json()["message"] == "UN_AUTHORIZED"


def test_a_token_sees_only_its_own_organization(merchant: Merchant, server: RunningServer) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    with new_organization(server, "other merchant") as other:
        access, _, secret = other.token.partition(".")
        token = httpx.post(
            url(server, "/token"), json={"accessKey": access, "secretKey": secret}, timeout=30
        ).json()["accessToken"]
    answer = read_subscription(server, scene.subscription_id, token)
    assert answer.status_code == 404
    assert answer.json()["message"] == "SUBSCRIPTION_NOT_FOUND"


def test_the_signing_key_lives_in_the_database_for_every_process(merchant: Merchant) -> None:
    token = merchant.client.headers["Authorization"].removeprefix("Bearer ")
    with merchant.server.db.read() as conn:
        stored = conn.execute(select(t.server_secrets.c.name)).scalars().all()
    assert "token_signing_key" in stored
    # Another process over the same database: its own context, nothing shared in memory.
    context = build_context(merchant.server.settings, merchant.server.clock)
    try:
        other = TokenService(context)
        assert other.organization_for(token) == merchant.org.id
        with pytest.raises(Unauthorized):
            other.organization_for(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    finally:
        context.db.dispose()


def test_an_unknown_path_answers_in_saaslogic_shape(merchant: Merchant) -> None:
    answer = merchant.client.get("/no/such/path")
    assert answer.status_code == 404
    assert answer.json()["message"] == "NOT_FOUND"
