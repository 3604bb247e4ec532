"""``POST /v1/activities/*``: roles and input checks, before anything reaches Kafka. No
broker runs (a closed loopback port): a valid request is 503, so every 400 and 403
below was decided by the route itself. Sending is tested on Kafka
(tests/integration/test_async_completion_on_kafka.py)."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.task_token import TaskToken
from tests.integration.http_helpers import ADMIN_TOKEN, READ_TOKEN, bearer, running_api
from tests.unit.http_api.test_http_unavailable import closed_port

TOKEN = TaskToken("order-42", "run-1", 1, 1).encode()


async def test_activity_routes_check_roles_and_bodies() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "acts", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):

        async def post(path: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> Any:
            r = await http.post(f"/v1/activities/{path}", json=body, headers=bearer(token))
            return r.status_code, r.json().get("message", "")

        assert (await post("complete", {"token": TOKEN}, READ_TOKEN))[0] == 403
        assert (await post("heartbeat", {"token": TOKEN}, READ_TOKEN))[0] == 403
        code, message = await post("complete", {"token": "abc"})
        assert (code, "not a task token" in message) == (400, True)
        code, message = await post("complete", {"token": 7})
        assert (code, message) == (400, "token must be a string")
        code, message = await post("complete", {"token": TOKEN, "resultt": 1})
        assert code == 400 and "unknown fields: resultt" in message
        code, message = await post("fail", {"token": TOKEN})
        assert code == 400 and "missing fields: message" in message
        bad_flag = {"token": TOKEN, "message": "m", "non_retryable": "yes"}
        assert await post("fail", bad_flag) == (400, "non_retryable must be true or false")
        assert await post("fail", {"token": TOKEN, "message": "m", "type": ""}) == (
            400, "type must not be empty",
        )
        code, message = await post("heartbeat", {"token": TOKEN, "details": "x"})
        assert code == 400 and "details" in message
        code, message = await post("complete", {"token": TOKEN, "wait": 61})
        assert (code, message) == (400, "wait must be between 0 and 60 seconds")
        code, message = await post("heartbeat", {"token": TOKEN, "wait": "soon"})
        assert (code, message) == (400, "wait must be a number of seconds")
        for path, body in (
            ("complete", {"token": TOKEN, "result": {"ok": True}}),
            ("fail", {"token": TOKEN, "message": "m", "non_retryable": True}),
            ("heartbeat", {"token": TOKEN, "details": [1]}),
            ("complete", {"token": TOKEN, "wait": 0}),
        ):
            assert (await post(path, body))[0] == 503, "valid: only Kafka is missing"


async def test_pause_routes_check_roles_and_bodies() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "acts", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):

        async def post(path: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> Any:
            r = await http.post(f"/v1/activities/{path}", json=body, headers=bearer(token))
            return r.status_code, r.json().get("message", "")

        valid = {"task_queue": "payments", "activity_type": "payments.charge", "reason": "down"}
        assert (await post("pause", valid, READ_TOKEN))[0] == 403
        assert (await post("unpause", valid, READ_TOKEN))[0] == 403
        code, message = await post("pause", {"task_queue": "payments"})
        assert code == 400 and "missing fields: activity_type" in message
        code, message = await post("pause", {**valid, "task_queue": "a/b"})
        assert code == 400 and "task_queue must match" in message
        code, message = await post("unpause", {**valid, "activity_type": ""})
        assert (code, message) == (400, "activity_type must not be empty")
        code, message = await post("pause", {**valid, "reasonn": "x"})
        assert code == 400 and "unknown fields: reasonn" in message
        assert (await post("pause", valid))[0] == 503, "valid: only Kafka is missing"
        listed = await http.get("/v1/activities/paused?task_queue=payments",
                                headers=bearer(READ_TOKEN))
        assert listed.status_code == 503, "a read token may list; only Kafka is missing"
        typo = await http.get("/v1/activities/paused?queue=payments")
        assert typo.status_code == 400
