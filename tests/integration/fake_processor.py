"""A payment processor that implements the operations contract with aiohttp alone (no
orchestrator code): ``charge`` answers 201 and calls back after a delay, signed with
HMAC-SHA256; ``quote`` answers 200 with its result at once; ``flaky`` answers 503 to
the first start of a request id; ``hang`` never ends; ``silent`` ends without calling
back (its status says so)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
from aiohttp import web

DELAY_S = 0.5


class FakeProcessor:
    """The service; ``starts`` counts start requests by request id."""

    def __init__(self, token: str, secret: str) -> None:
        self.token, self.secret = token, secret
        self.starts: dict[str, int] = {}
        self.cancelled: list[str] = []
        self.operations: dict[str, str] = {}  # request id -> operation id
        self.states: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.post("/v1/operations/pay/{operation}", self.start),
            web.get("/v1/operations/pay/{operation}/{operation_id}", self.status),
            web.post("/v1/operations/pay/{operation}/{operation_id}/cancel", self.cancel),
        ])
        return app

    def _authorized(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", ""),
                                   f"Bearer {self.token}")

    async def start(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        request_id = body["request_id"]
        self.starts[request_id] = self.starts.get(request_id, 0) + 1
        amount = body["input"]["amount"]
        operation = request.match_info["operation"]
        if operation == "quote":
            return web.json_response({"result": {"fee": amount // 10}})
        if operation == "flaky" and self.starts[request_id] == 1:
            return web.json_response({"error": "busy"}, status=503)
        if request_id not in self.operations:
            operation_id = f"pay-{uuid.uuid4().hex[:8]}"
            self.operations[request_id] = operation_id
            self.states[operation_id] = {"operation_id": operation_id, "state": "running"}
            if operation != "hang":  # "hang" never calls back
                task = asyncio.get_running_loop().create_task(
                    self._call_back(operation_id, body, amount, send=operation != "silent")
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        operation_id = self.operations[request_id]
        return web.json_response({"operation_id": operation_id, "state": "running"}, status=201)

    async def status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        found = self.states.get(request.match_info["operation_id"])
        return web.json_response(found or {"error": "not_found"}, status=200 if found else 404)

    async def cancel(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        operation_id = request.match_info["operation_id"]
        if operation_id not in self.states:
            return web.json_response({"error": "not_found"}, status=404)
        self.cancelled.append(operation_id)
        self.states[operation_id] = {"operation_id": operation_id, "state": "cancelled",
                                     "failure": {"message": "cancelled", "type": "Cancelled"}}
        return web.json_response({"operation_id": operation_id, "state": "running"},
                                 status=202)

    async def _call_back(
        self, operation_id: str, start: dict[str, Any], amount: int, *, send: bool
    ) -> None:
        await asyncio.sleep(DELAY_S)
        if amount > 1000:
            outcome = {"state": "failed", "failure": {
                "message": "limit exceeded", "type": "Limit",
                "cause": {"message": "daily limit 1000", "type": "Policy"}}}
        else:
            outcome = {"state": "succeeded", "result": {"paid": amount, "by": "fakepay"}}
        self.states[operation_id] = {"operation_id": operation_id, **outcome}
        if not send:
            return
        body = json.dumps({"callback_token": start["callback_token"],
                           "operation_id": operation_id, **outcome}).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(20):
                try:
                    r = await http.post(start["callback_url"], content=body, headers={
                        "Content-Type": "application/json",
                        "Saga-Operation-Signature": signature})
                    if r.status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
