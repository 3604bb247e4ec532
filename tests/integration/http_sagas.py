"""A workflow with every kind of handler, for the HTTP API tests (with e2e_sagas.nap)."""

from __future__ import annotations

from orchestrator import workflow


@workflow.defn(name="http.account")
class Account:
    """A balance: ``deposit`` signals, a ``withdraw`` update that refuses overdrafts,
    a ``balance`` query; it runs until ``close`` is signalled, then returns the balance."""

    def __init__(self) -> None:
        self.balance_now = 0
        self.closed = False

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, opening: int) -> int:
        self.balance_now = opening
        await ctx.wait_condition(lambda: self.closed)
        return self.balance_now

    @workflow.signal(name="deposit")
    def deposit(self, amount: int) -> None:
        self.balance_now += amount

    @workflow.signal(name="close")
    def close(self) -> None:
        self.closed = True

    @workflow.update(name="withdraw")
    async def withdraw(self, amount: int) -> int:
        self.balance_now -= amount
        return self.balance_now

    @workflow.update_validator("withdraw")
    def check_withdraw(self, amount: int) -> None:
        if amount > self.balance_now:
            raise ValueError(f"insufficient funds: {self.balance_now} < {amount}")

    @workflow.query(name="balance")
    def balance(self) -> int:
        return self.balance_now
