"""Schedule verbs of the clients: a schedule is a run of the built-in
``saga.schedule`` workflow, so each verb is a start, an update or a query of it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.schedules.spec import (
    OverlapPolicy,
    ScheduleAction,
    ScheduleChange,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
    check_schedule_id,
)
from orchestrator.schedules.workflow import ScheduleState, schedule_workflow_id

if TYPE_CHECKING:
    from orchestrator.client._async import AsyncWorkflowHandle
    from orchestrator.client._sync import WorkflowHandle

__all__ = ["AsyncScheduleHandle", "ScheduleHandle", "new_schedule"]


def new_schedule(
    schedule_id: str,
    spec: ScheduleSpec,
    action: ScheduleAction,
    policy: SchedulePolicy | None,
    *,
    paused: bool,
    note: str,
) -> tuple[str, ScheduleState]:
    """The workflow id and first input of a new schedule; ValueError lists what is wrong."""
    check_schedule_id(schedule_id)
    policy = policy or SchedulePolicy()
    problems = [*spec.problems(), *policy.problems()]
    if not action.workflow_type or not action.task_queue:
        problems.append("the action needs a workflow type and a task queue")
    if problems:
        raise ValueError(f"schedule {schedule_id!r}: " + "; ".join(problems))
    state = ScheduleState(schedule_id, spec, action, policy, paused=paused, note=note)
    return schedule_workflow_id(schedule_id), state


def _change(
    spec: ScheduleSpec | None,
    action: ScheduleAction | None,
    policy: SchedulePolicy | None,
    note: str | None,
) -> ScheduleChange:
    return ScheduleChange(spec=spec, action=action, policy=policy, note=note)


class ScheduleHandle:
    """A schedule, for a blocking :class:`~orchestrator.client.Client`. Every verb
    waits for the schedule's answer (``timeout`` seconds)."""

    def __init__(self, workflow: WorkflowHandle[Any], schedule_id: str) -> None:
        self.schedule_id = schedule_id
        self.workflow = workflow
        """The handle of the schedule's workflow (its id is ``schedule:<id>``)."""

    def describe(self, timeout: float = 10.0) -> ScheduleDescription:
        """Spec, counters, running firings, recent actions and next firing times."""
        described: ScheduleDescription = self.workflow.query(
            "describe", timeout=timeout, result_type=ScheduleDescription
        )
        return described

    def update(
        self,
        *,
        spec: ScheduleSpec | None = None,
        action: ScheduleAction | None = None,
        policy: SchedulePolicy | None = None,
        note: str | None = None,
        timeout: float = 30.0,
    ) -> ScheduleDescription:
        """Replace the parts given (UpdateRejectedError if invalid)."""
        done: ScheduleDescription = self.workflow.update(
            "update", _change(spec, action, policy, note), timeout=timeout,
            result_type=ScheduleDescription,
        )
        return done

    def pause(self, note: str = "", timeout: float = 30.0) -> None:
        """Stop firing until unpaused (firings due meanwhile never run)."""
        self.workflow.update("pause", note, timeout=timeout)

    def unpause(self, note: str = "", timeout: float = 30.0) -> None:
        """Fire again, from now on."""
        self.workflow.update("unpause", note, timeout=timeout)

    def trigger(self, overlap: OverlapPolicy | None = None, timeout: float = 30.0) -> str:
        """Fire now; the firing's workflow id."""
        wid: str = self.workflow.update("trigger", overlap, timeout=timeout, result_type=str)
        return wid

    def backfill(
        self,
        start: datetime,
        end: datetime,
        overlap: OverlapPolicy | None = None,
        timeout: float = 30.0,
    ) -> list[str]:
        """Fire every nominal time in ``[start, end)`` now; their workflow ids."""
        ids: list[str] = self.workflow.update(
            "backfill", start, end, overlap, timeout=timeout, result_type=list[str]
        )
        return ids

    def delete(self, timeout: float = 30.0) -> None:
        """End the schedule; firings that run go on."""
        self.workflow.update("delete", timeout=timeout)


class AsyncScheduleHandle:
    """A schedule, for an :class:`~orchestrator.client.AsyncClient` (see ScheduleHandle)."""

    def __init__(self, workflow: AsyncWorkflowHandle[Any], schedule_id: str) -> None:
        self.schedule_id = schedule_id
        self.workflow = workflow

    async def describe(self, timeout: float = 10.0) -> ScheduleDescription:  # noqa: ASYNC109
        """Spec, counters, running firings, recent actions and next firing times."""
        described: ScheduleDescription = await self.workflow.query(
            "describe", timeout=timeout, result_type=ScheduleDescription
        )
        return described

    async def update(
        self,
        *,
        spec: ScheduleSpec | None = None,
        action: ScheduleAction | None = None,
        policy: SchedulePolicy | None = None,
        note: str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
    ) -> ScheduleDescription:
        """Replace the parts given (UpdateRejectedError if invalid)."""
        done: ScheduleDescription = await self.workflow.update(
            "update", _change(spec, action, policy, note), timeout=timeout,
            result_type=ScheduleDescription,
        )
        return done

    async def pause(self, note: str = "", timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Stop firing until unpaused."""
        await self.workflow.update("pause", note, timeout=timeout)

    async def unpause(self, note: str = "", timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Fire again, from now on."""
        await self.workflow.update("unpause", note, timeout=timeout)

    async def trigger(self, overlap: OverlapPolicy | None = None, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Fire now; the firing's workflow id."""
        wid: str = await self.workflow.update("trigger", overlap, timeout=timeout, result_type=str)
        return wid

    async def backfill(
        self,
        start: datetime,
        end: datetime,
        overlap: OverlapPolicy | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
    ) -> list[str]:
        """Fire every nominal time in ``[start, end)`` now; their workflow ids."""
        ids: list[str] = await self.workflow.update(
            "backfill", start, end, overlap, timeout=timeout, result_type=list[str]
        )
        return ids

    async def delete(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """End the schedule; firings that run go on."""
        await self.workflow.update("delete", timeout=timeout)
