"""The operation routes refuse before touching Kafka: a callback without a valid
signature or token, a start without a bearer token, for an unknown operation, or with
a callback URL outside the allow-list. (Kafka is unreachable here, so a request that
gets past every check answers 503.)"""

from __future__ import annotations

import json

import httpx

from orchestrator.operations import CallerEntry, Endpoint, OperationHandler, OperationsConfig
from orchestrator.operations.signing import SIGNATURE_HEADER, CallbackToken, sign_body
from tests.integration.http_helpers import ADMIN_TOKEN, READ_TOKEN, bearer, running_api
from tests.unit.http_api.test_http_unavailable import closed_port

SECRET = "payments-secret-0123456789"
OTHER = "another-secret-0123456789"
CALLBACK = "http://127.0.0.1:9/v1/operation-callbacks"
OPS = OperationsConfig(
    endpoints={"payments": Endpoint("http://127.0.0.1:9", "billing", "t" * 20, SECRET),
               "other": Endpoint("http://127.0.0.1:9", "x", "t" * 20, OTHER)},
    callback_url=CALLBACK,
    handlers={"billing/charge": OperationHandler("billing.charge", "billing")},
    callers=(CallerEntry(CALLBACK, SECRET),),
)


def _callback(token: str, secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"callback_token": token, "state": "succeeded", "result": 1}).encode()
    return body, {SIGNATURE_HEADER: sign_body(secret, body),
                  "Content-Type": "application/json"}


async def test_a_callback_must_carry_a_valid_signature_and_token() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    good = CallbackToken("order-1", "run-1", "k", "payments").encode(SECRET)
    async with (
        running_api(config, "ops", healthy=False, operations=OPS) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        path = "/v1/operation-callbacks"
        assert (await http.post(path, json={"callback_token": good})).status_code == 401
        body, headers = _callback(good, OTHER)
        r = await http.post(path, content=body, headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), "wrong body secret"
        body, headers = _callback("op1.garbage.mac", SECRET)
        assert (await http.post(path, content=body, headers=headers)).status_code == 401
        forged = CallbackToken("order-1", "run-1", "k", "payments").encode(OTHER)
        body, headers = _callback(forged, SECRET)
        r = await http.post(path, content=body, headers=headers)
        assert r.status_code == 401, "a token MACed by another endpoint's secret"
        unknown = CallbackToken("order-1", "run-1", "k", "nobody").encode(SECRET)
        body, headers = _callback(unknown, SECRET)
        assert (await http.post(path, content=body, headers=headers)).status_code == 401
        body, headers = _callback(good, SECRET)
        r = await http.post(path, content=body, headers=headers)
        assert r.status_code == 503, "verified; only Kafka is missing"


async def test_operation_routes_need_tokens_a_known_operation_and_an_allowed_callback() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    start = {"input": {}, "request_id": "r-1", "callback_url": CALLBACK,
             "callback_token": "op1.x.y"}
    async with (
        running_api(config, "ops", healthy=False, operations=OPS) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        path = "/v1/operations/billing/charge"
        assert (await http.post(path, json=start)).status_code == 401
        r = await http.post(path, json=start, headers=bearer(READ_TOKEN))
        assert r.status_code == 403, "starting needs an admin token"
        r = await http.post("/v1/operations/billing/refund", json=start,
                            headers=bearer(ADMIN_TOKEN))
        assert (r.status_code, r.json()["error"]) == (404, "operation_not_found")
        elsewhere = {**start, "callback_url": "http://169.254.169.254/latest"}
        r = await http.post(path, json=elsewhere, headers=bearer(ADMIN_TOKEN))
        assert (r.status_code, r.json()["error"]) == (403, "callback_not_allowed")
        r = await http.post(path, json=start, headers=bearer(ADMIN_TOKEN))
        assert r.status_code == 503, "checked; only Kafka is missing"
        assert (await http.get(path + "/op-1")).status_code == 401
        assert (await http.post(path + "/op-1/cancel")).status_code == 401
