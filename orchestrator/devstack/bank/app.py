"""The demo bank's HTTP API (aiohttp), backed by the idempotent ledger.

Money endpoints (withdraw, deposit, transfer, reversal) need an ``Idempotency-Key``
header; the same key always gets the same status and body (a replay is marked by
``Idempotent-Replayed: true``), and is applied at most once. They go through the
fault gate, in this order: outage (503 + Retry-After, nothing applied), added
latency, random 500 (nothing applied), the operation, then an optional delay
*after* applying. Reads, account opening and the admin API are never faulted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from orchestrator.connectors.postgres import Ledger, Receipt
from orchestrator.devstack.bank.faults import Faults
from orchestrator.exceptions import ApplicationError

__all__ = ["FAULTS", "LEDGER", "build_app"]

LEDGER: web.AppKey[Ledger] = web.AppKey("ledger", Ledger)
FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)

_STATUS_BY_ERROR = {
    "InsufficientFunds": 422,
    "AccountNotFound": 404,
    "AccountExists": 409,
    "OperationVoided": 409,
    "IdempotencyKeyReused": 422,
    "NotReversible": 422,
    "InvalidAmount": 400,
    "InvalidTransfer": 400,
    "InvalidIdempotencyKey": 400,
}

Handler = Callable[[web.Request], Awaitable[web.Response]]


class _BadRequest(Exception):  # noqa: N818 (becomes a 400)
    pass


def _error(status: int, kind: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status, headers=headers)


def _receipt_response(receipt: Receipt, status: int = 200) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else {}
    return web.json_response(receipt.to_json(), status=status, headers=headers)


def _ledger_error(err: ApplicationError) -> web.Response:
    status = _STATUS_BY_ERROR.get(err.type)
    if status is not None:
        return _error(status, err.type, err.message)
    if err.retryable:
        return _error(503, err.type, "ledger temporarily unavailable", **{"Retry-After": "1"})
    return _error(500, err.type, "ledger error")


async def _body(request: web.Request, *fields: str) -> dict[str, Any]:
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError:
        raise _BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    missing = [f for f in fields if f not in data]
    if missing:
        raise _BadRequest(f"missing fields: {', '.join(missing)}")
    return data


def _amount(data: dict[str, Any]) -> int:
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise _BadRequest("amount must be an integer (minor units)")
    return amount


def _key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise _BadRequest("the Idempotency-Key header is required")
    return key


def _money(op: Callable[[web.Request, Ledger, str], Awaitable[Receipt]]) -> Handler:
    """Wrap a money operation in the idempotency-key check and the fault gate."""

    async def handler(request: web.Request) -> web.Response:
        faults = request.app[FAULTS]
        retry_after = faults.outage_retry_after()
        if retry_after is not None:
            return _error(503, "bank_holiday", "the bank is closed", **{"Retry-After": retry_after})
        latency = faults.added_latency()
        if latency:
            await asyncio.sleep(latency)
        if faults.draw_error():
            return _error(500, "internal_error", "injected failure; nothing was applied")
        try:
            key = _key(request)
            response = _receipt_response(await op(request, request.app[LEDGER], key))
        except _BadRequest as exc:
            return _error(400, "bad_request", str(exc))
        except ApplicationError as err:
            response = _ledger_error(err)
        delay = faults.take_slow()
        if delay:
            # Applied and committed; the caller has probably given up by now.
            await asyncio.sleep(delay)
        return response

    return handler


async def _withdraw(request: web.Request, ledger: Ledger, key: str) -> Receipt:
    amount = _amount(await _body(request, "amount"))
    return await ledger.debit(key, request.match_info["account_id"], amount)


async def _deposit(request: web.Request, ledger: Ledger, key: str) -> Receipt:
    amount = _amount(await _body(request, "amount"))
    return await ledger.credit(key, request.match_info["account_id"], amount)


async def _transfer(request: web.Request, ledger: Ledger, key: str) -> Receipt:
    data = await _body(request, "source", "target", "amount")
    return await ledger.transfer(key, str(data["source"]), str(data["target"]), _amount(data))


async def _reverse(request: web.Request, ledger: Ledger, key: str) -> Receipt:
    data = await _body(request, "original_key")
    return await ledger.reverse(key, str(data["original_key"]))


async def _open_account(request: web.Request) -> web.Response:
    try:
        data = await _body(request, "account_id")
        initial = _amount({"amount": data.get("initial_balance", 0)})
        key = request.headers.get("Idempotency-Key") or None
        receipt = await request.app[LEDGER].open_account(str(data["account_id"]), initial, key=key)
    except _BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    except ApplicationError as err:
        return _ledger_error(err)
    return _receipt_response(receipt, status=200 if receipt.replayed else 201)


async def _balance(request: web.Request) -> web.Response:
    account = request.match_info["account_id"]
    try:
        balance = await request.app[LEDGER].balance(account)
    except ApplicationError as err:
        return _ledger_error(err)
    return web.json_response({"account_id": account, "balance": balance})


async def _total(request: web.Request) -> web.Response:
    try:
        total, accounts = await request.app[LEDGER].total()
    except ApplicationError as err:
        return _ledger_error(err)
    return web.json_response({"total": total, "accounts": accounts})


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].snapshot())


async def _put_faults(request: web.Request) -> web.Response:
    try:
        request.app[FAULTS].configure(**await _body(request))
    except (_BadRequest, ValueError, TypeError) as exc:
        return _error(400, "bad_request", str(exc))
    return web.json_response(request.app[FAULTS].snapshot())


async def _reset_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].reset()
    return web.json_response(request.app[FAULTS].snapshot())


def build_app(ledger: Ledger, faults: Faults) -> web.Application:
    """The bank's routes around an open ledger and a fault controller."""
    app = web.Application()
    app[LEDGER] = ledger
    app[FAULTS] = faults
    app.router.add_post("/accounts", _open_account)
    app.router.add_get("/accounts/{account_id}", _balance)
    app.router.add_post("/accounts/{account_id}/withdraw", _money(_withdraw))
    app.router.add_post("/accounts/{account_id}/deposit", _money(_deposit))
    app.router.add_post("/transfers", _money(_transfer))
    app.router.add_post("/reversals", _money(_reverse))
    app.router.add_get("/total", _total)
    app.router.add_get("/health", _health)
    app.router.add_get("/admin/faults", _get_faults)
    app.router.add_put("/admin/faults", _put_faults)
    app.router.add_delete("/admin/faults", _reset_faults)
    return app
