"""The one error taxonomy of the orchestrator.

::

    BaseException
    ├── asyncio.CancelledError ........ delivered at the current await when a run,
    │                                   an activity wait, a timer or a running async
    │                                   activity attempt is cancelled
    ├── ActivityCancelledError ........ raised by activity.heartbeat() in a sync
    │                                   activity whose attempt the engine cancelled
    ├── WorkflowControl ............... engine control flow; user code must not catch it
    │   └── ContinueAsNew ............. raised by ctx.continue_as_new()
    └── WorkflowTaskError ............. the engine cannot go on with this run; it is
        │                               parked (not failed) until fixed code is deployed
        └── NonDeterminismError ....... replay issued a different command than history
            └── NondeterministicCallError  time.time(), random, I/O... in workflow code
    Exception
    └── OrchestratorError
        ├── FailureError .............. errors recorded in history as a Failure
        │   ├── ApplicationError ...... raised by user code; non_retryable=,
        │   │   │                       next_retry_delay= steer the retry policy
        │   │   ├── WorkflowNotFoundError ....... a shard refused: no such workflow run
        │   │   ├── WorkflowAlreadyStartedError . a start refused by its reuse policy
        │   │   ├── WorkflowClosedError ......... a command for a run that has closed
        │   │   ├── OperationError .............. an operation (ctx.execute_operation)
        │   │   │                                 failed, was cancelled or timed out
        │   │   └── ActivityNotRunningError ..... an outcome sent by task token for an
        │   │                                     attempt that is not the running one
        │   ├── ActivityError ......... an activity failed for good; .cause says why
        │   ├── ActivityTimeoutError .. cause of an ActivityError after a timeout
        │   ├── ChildWorkflowError .... a child workflow failed; .cause says why
        │   └── CompensationError ..... a compensation exhausted its policy; keeps the
        │                               original error and every compensation error
        ├── WorkflowFailedError ....... seen by callers: the run did not complete
        ├── ReplyTimeoutError ......... no reply in time (also a TimeoutError)
        ├── UpdateRejectedError ....... an update was refused or its handler failed
        ├── QueryError ................ a query handler is missing or failed
        ├── DefinitionError ........... @workflow.defn / @activity.defn found problems
        ├── NotFoundError ............. unknown workflow, activity, signal or update name
        └── PayloadConversionError .... a value could not be encoded or decoded

A :class:`FailureError` rebuilt from a recorded failure (by a client, or in workflow
code from an activity's or child's failure) carries ``remote_stack_trace``, the stack
trace recorded where it was raised. Clients and the test environment use the same
converter, so a saga's error handling behaves alike in tests and in production.

Control flow derives from ``BaseException`` so that ``except Exception`` in saga
code never swallows it. ``retryable`` is a class-level flag that retry logic reads;
:class:`ApplicationError` overrides it per instance through ``non_retryable``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

__all__ = [
    "ActivityCancelledError",
    "ActivityError",
    "ActivityNotRunningError",
    "ActivityTimeoutError",
    "ApplicationError",
    "ChildWorkflowError",
    "CompensationError",
    "ContinueAsNew",
    "DefinitionError",
    "FailureError",
    "NonDeterminismError",
    "NondeterministicCallError",
    "NotFoundError",
    "OperationError",
    "OrchestratorError",
    "PayloadConversionError",
    "QueryError",
    "ReplyTimeoutError",
    "UpdateRejectedError",
    "WorkflowAlreadyStartedError",
    "WorkflowClosedError",
    "WorkflowControl",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowTaskError",
]


class ActivityCancelledError(BaseException):
    """The engine no longer waits for this activity attempt (its workflow was
    cancelled, or the scope awaiting it ended): stop, clean up, and let it propagate.

    Raised by ``activity.heartbeat()`` in a sync activity once its attempt is cancelled
    (``activity.is_cancelled()`` turns True at the same moment); an async activity gets
    ``asyncio.CancelledError`` at its current await instead. A ``BaseException``, so an
    ``except Exception`` in the activity does not swallow it. Whatever the attempt
    returns or raises afterwards is reported as a cancellation, which the engine ignores.
    """


class WorkflowControl(BaseException):
    """Engine control flow raised through workflow code; never catch it."""


class ContinueAsNew(WorkflowControl):
    """Ends the run and starts a fresh one of the same workflow with new arguments."""

    def __init__(
        self, args: tuple[Any, ...], workflow: str | None = None, version: int | None = None
    ) -> None:
        super().__init__("continue as new")
        self.args = args
        self.workflow = workflow
        self.version = version


class WorkflowTaskError(BaseException):
    """The engine cannot continue this run; it is parked, not failed."""


class NonDeterminismError(WorkflowTaskError):
    """The code did not issue the command that history recorded at event ``seq``."""

    def __init__(
        self,
        message: str,
        *,
        seq: int | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        detail = message
        if seq is not None:
            detail += f" (event seq {seq}: expected {expected}, got {actual})"
        super().__init__(detail)
        self.seq = seq
        self.expected = expected
        self.actual = actual


class NondeterministicCallError(NonDeterminismError):
    """Workflow code called something non-deterministic (clock, randomness, I/O)."""


class OrchestratorError(Exception):
    """Base of every ordinary error raised by this package."""

    retryable: ClassVar[bool] = True


class FailureError(OrchestratorError):
    """An error that is recorded in history as a Failure and crosses process lines.

    Rebuilt from a recorded failure (a caller of ``result()``, workflow code seeing an
    activity's or child's error), ``remote_stack_trace`` is the stack trace recorded
    where it was raised, in another process ("" when none was recorded).
    """

    remote_stack_trace: str = ""


class ApplicationError(FailureError):
    """An error raised on purpose by activity or workflow code.

    ``type`` names the error for retry policies (defaults to the class name);
    ``non_retryable=True`` stops retries at once; ``next_retry_delay`` replaces the
    policy's backoff for the next attempt only; ``details`` are extra values.
    """

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.type = type or self.__class__.__name__
        self.non_retryable = non_retryable
        self.next_retry_delay = next_retry_delay

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """False when raised with ``non_retryable=True``."""
        return not self.non_retryable


class ActivityTimeoutError(FailureError):
    """An activity attempt ran past ``timeout_type`` (start_to_close, ...)."""

    def __init__(self, timeout_type: str) -> None:
        super().__init__(f"activity timed out ({timeout_type})")
        self.timeout_type = timeout_type


class ActivityError(FailureError):
    """An activity failed after its retry policy gave up; ``__cause__`` is why."""

    retryable = False

    def __init__(
        self, message: str, *, activity_type: str, activity_seq: int, attempt: int
    ) -> None:
        super().__init__(message)
        self.activity_type = activity_type
        self.activity_seq = activity_seq
        self.attempt = attempt

    @property
    def cause(self) -> BaseException | None:
        """The underlying error (ApplicationError, ActivityTimeoutError, ...)."""
        return self.__cause__


class ChildWorkflowError(FailureError):
    """A child workflow did not complete; ``__cause__`` is why."""

    retryable = False

    def __init__(self, message: str, *, workflow_type: str, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id

    @property
    def cause(self) -> BaseException | None:
        """The child's error."""
        return self.__cause__


class CompensationError(FailureError):
    """A compensation exhausted its policy; the run ends COMPENSATION_FAILED.

    ``original`` is what started compensating; ``errors`` are the compensations'.
    """

    retryable = False

    def __init__(self, original: BaseException, errors: list[BaseException]) -> None:
        super().__init__(
            f"compensation failed ({len(errors)} error(s)) after: {original!r}"
        )
        self.original = original
        self.errors = errors


class WorkflowFailedError(OrchestratorError):
    """Raised to a caller waiting for a result when the run did not complete.

    ``status`` is the final status name (FAILED, CANCELLED, COMPENSATION_FAILED,
    TERMINATED, TIMED_OUT); ``__cause__`` is the workflow's error when there is one, and
    ``compensation_errors`` are the compensations' errors after COMPENSATION_FAILED.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str,
        compensation_errors: list[BaseException] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.compensation_errors = compensation_errors or []

    @property
    def cause(self) -> BaseException | None:
        """The workflow's error, if any."""
        return self.__cause__


class WorkflowNotFoundError(ApplicationError):
    """The shard knows no such workflow id (or run): nothing was started, or its
    retention ended. ``type`` is ``WorkflowNotFound``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="WorkflowNotFound", non_retryable=True)


class WorkflowAlreadyStartedError(ApplicationError):
    """A start refused by its id reuse policy: the id's latest run exists.
    ``type`` is ``WorkflowAlreadyStarted``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="WorkflowAlreadyStarted", non_retryable=True)


class WorkflowClosedError(ApplicationError):
    """A signal, cancel, terminate or update for a run that has closed.
    ``type`` is ``WorkflowClosed``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="WorkflowClosed", non_retryable=True)


class OperationError(ApplicationError):
    """An operation called with ``ctx.execute_operation`` did not succeed: ``state`` is
    ``failed``, ``cancelled`` or ``timed_out``; ``__cause__`` is the handler's failure
    (its cause chain as ApplicationErrors). ``type`` is ``OperationError``; never
    retried."""

    def __init__(
        self, message: str, *, endpoint: str, operation: str, operation_id: str, state: str
    ) -> None:
        super().__init__(
            message,
            {"endpoint": endpoint, "operation": operation, "operation_id": operation_id,
             "state": state},
            type="OperationError",
            non_retryable=True,
        )
        self.endpoint = endpoint
        self.operation = operation
        self.operation_id = operation_id
        self.state = state


class ActivityNotRunningError(ApplicationError):
    """An outcome or heartbeat sent by task token for an attempt that is not running
    (it ended, timed out, was retried or cancelled, or never started); the message says
    which, and the engine changed nothing. ``type`` is ``ActivityNotRunning``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="ActivityNotRunning", non_retryable=True)


class ReplyTimeoutError(OrchestratorError, TimeoutError):
    """No reply arrived in time (is an engine worker running for this prefix?)."""


class UpdateRejectedError(OrchestratorError):
    """An update did not succeed: its validator or lookup refused it (nothing was
    recorded), or its handler raised. ``__cause__`` is the validator's or handler's
    error when there is one."""


class QueryError(OrchestratorError):
    """A query could not be answered."""


class DefinitionError(OrchestratorError):
    """A workflow or activity definition is invalid; ``problems`` lists every issue."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"invalid definition {name!r}: " + "; ".join(problems))
        self.problems = problems


class NotFoundError(OrchestratorError):
    """A name (workflow, activity, signal, update, query) is not registered."""


class PayloadConversionError(OrchestratorError):
    """A value could not be encoded to, or decoded from, a payload."""

    retryable = False
