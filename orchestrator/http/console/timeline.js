// A run's history folded into what a person asks about: its activities (with every
// attempt), timers, signals, updates, children, the saga's compensations, and the
// failure. Pure: events in, a summary out.

const ms = (v) => (typeof v === "number" ? new Date(v).toISOString() : null);

export function fold(events) {
  const activities = new Map();
  const timers = new Map();
  const children = new Map();
  const signals = [];
  const updates = new Map();
  const compensations = [];
  let compensating = false;
  let started = null;
  let closed = null;
  let continuedAs = null;
  for (const e of events) {
    switch (e.type) {
      case "WorkflowStarted":
        started = e;
        break;
      case "ActivityScheduled":
        activities.set(e.activity_seq, {
          seq: e.activity_seq, type: e.activity_type, queue: e.task_queue, scheduled: e.time,
          input: e.input, attempts: [], state: "SCHEDULED", compensation: compensating, result: undefined,
        });
        break;
      case "ActivityCompleted":
      case "ActivityAttemptFailed":
      case "ActivityFailed":
      case "ActivityTimedOut": {
        const a = activities.get(e.activity_seq);
        if (!a) break;
        const outcome = { ActivityCompleted: "completed", ActivityAttemptFailed: "failed, will retry",
          ActivityFailed: "failed", ActivityTimedOut: `timed out (${e.timeout_type})` }[e.type];
        a.attempts.push({ attempt: e.attempt, outcome, time: e.time, failure: e.failure || null,
          retryAt: ms(e.next_retry_at) });
        if (e.type === "ActivityCompleted") { a.state = "COMPLETED"; a.result = e.result; }
        else if (e.type === "ActivityFailed") a.state = "FAILED";
        else if (e.type === "ActivityTimedOut") a.state = "TIMED_OUT";
        else a.state = "RETRYING";
        break;
      }
      case "ActivityCancelRequested": {
        const a = activities.get(e.activity_seq);
        if (a && (a.state === "SCHEDULED" || a.state === "RETRYING")) a.state = "CANCEL_REQUESTED";
        break;
      }
      case "TimerStarted":
        timers.set(e.timer_id, { id: e.timer_id, started: e.time, fireAt: ms(e.fire_at), state: "PENDING" });
        break;
      case "TimerFired":
      case "TimerCancelled": {
        const t = timers.get(e.timer_id);
        if (t) t.state = e.type === "TimerFired" ? "FIRED" : "CANCELLED";
        break;
      }
      case "SignalReceived":
        signals.push({ name: e.signal_name, args: e.args, time: e.time });
        break;
      case "UpdateAccepted":
        updates.set(e.update_id, { id: e.update_id, name: e.update_name, args: e.args, time: e.time, state: "ACCEPTED" });
        break;
      case "UpdateCompleted": {
        const u = updates.get(e.update_id);
        if (u) { u.state = e.failure ? "FAILED" : "COMPLETED"; u.result = e.result; u.failure = e.failure; }
        break;
      }
      case "ChildWorkflowInitiated":
        children.set(e.child_seq, { seq: e.child_seq, type: e.workflow_type, id: e.workflow_id, runId: null, state: "INITIATED",
          parentClosePolicy: e.parent_close_policy || "ABANDON", cancelRequested: false });
        break;
      case "ChildWorkflowCancelRequested": {
        const c = children.get(e.child_seq);
        if (c) c.cancelRequested = true;
        break;
      }
      case "ChildWorkflowStarted":
      case "ChildWorkflowCompleted":
      case "ChildWorkflowFailed": {
        const c = children.get(e.child_seq);
        if (!c) break;
        if (e.type === "ChildWorkflowStarted") { c.runId = e.run_id; c.state = "STARTED"; }
        else if (e.type === "ChildWorkflowCompleted") c.state = "COMPLETED";
        else { c.state = "FAILED"; c.failure = e.failure; }
        break;
      }
      case "CompensationStarted":
        compensating = true;
        compensations.push({ sagaId: e.saga_id, planned: e.compensations, cause: e.cause, state: "RUNNING", time: e.time });
        break;
      case "CompensationCompleted":
      case "CompensationFailed": {
        const c = compensations.find((x) => x.sagaId === e.saga_id && x.state === "RUNNING");
        if (c) { c.state = e.type === "CompensationCompleted" ? "COMPLETED" : "FAILED"; c.failure = e.failure || null; }
        break;
      }
      case "CompensationRepaired": {
        // an operator reopened the failed compensation: it runs again (or goes on past a skip)
        const c = compensations.findLast((x) => x.state === "FAILED");
        if (c) { c.state = "RUNNING"; c.failure = null; }
        closed = null;
        break;
      }
      case "WorkflowContinuedAsNew":
        continuedAs = e.new_run_id;
        closed = e;
        break;
      case "WorkflowCompleted":
      case "WorkflowFailed":
      case "WorkflowCancelled":
      case "WorkflowTerminated":
      case "WorkflowTimedOut":
      case "WorkflowCompensationFailed":
        closed = e;
        break;
      default:
        break;
    }
  }
  const all = [...activities.values()];
  return {
    started,
    closed,
    continuedAs,
    continuedFrom: started ? started.continued_from_run_id : null,
    parent: started && started.parent_workflow_id ? { id: started.parent_workflow_id, runId: started.parent_run_id } : null,
    steps: all.filter((a) => !a.compensation),
    compensationActivities: all.filter((a) => a.compensation),
    pendingActivities: all.filter((a) => ["SCHEDULED", "RETRYING"].includes(a.state)),
    timers: [...timers.values()],
    pendingTimers: [...timers.values()].filter((t) => t.state === "PENDING"),
    signals,
    updates: [...updates.values()],
    children: [...children.values()],
    compensations,
    failure: closed && (closed.failure || null),
    compensationFailures: (closed && closed.compensation_failures) || [],
  };
}

/** One line saying what an event is about. */
export function summary(e) {
  switch (e.type) {
    case "WorkflowStarted": return `${e.workflow_type} on ${e.task_queue}`;
    case "ActivityScheduled": return `#${e.activity_seq} ${e.activity_type} on ${e.task_queue}`;
    case "ActivityCompleted": return `#${e.activity_seq} attempt ${e.attempt} completed`;
    case "ActivityAttemptFailed": return `#${e.activity_seq} attempt ${e.attempt}: ${e.failure.type}: ${e.failure.message}; retry at ${ms(e.next_retry_at)}`;
    case "ActivityFailed": return `#${e.activity_seq} attempt ${e.attempt}: ${e.failure.type}: ${e.failure.message}`;
    case "ActivityTimedOut": return `#${e.activity_seq} attempt ${e.attempt} timed out (${e.timeout_type})`;
    case "ActivityCancelRequested": return `#${e.activity_seq}`;
    case "TimerStarted": return `${e.timer_id} fires at ${ms(e.fire_at)}`;
    case "TimerFired": case "TimerCancelled": return e.timer_id;
    case "SignalReceived": return `${e.signal_name}(${JSON.stringify(e.args).slice(1, -1)})`;
    case "UpdateAccepted": return `${e.update_name} (${e.update_id})`;
    case "ChildWorkflowInitiated": return `${e.workflow_type} ${e.workflow_id} (parent-close policy ${e.parent_close_policy || "ABANDON"})`;
    case "ChildWorkflowCancelRequested": return `child #${e.child_seq}${e.reason ? `: ${e.reason}` : ""}`;
    case "ChildWorkflowStarted": return `child #${e.child_seq} run ${e.run_id}`;
    case "ChildWorkflowCompleted": return `child #${e.child_seq}`;
    case "ChildWorkflowFailed": return `child #${e.child_seq}: ${e.failure.type}: ${e.failure.message}`;
    case "CompensationStarted": return `saga ${e.saga_id}: ${e.compensations.join(", ")}`;
    case "CompensationCompleted": return `saga ${e.saga_id}`;
    case "CompensationFailed": return `saga ${e.saga_id}: ${e.activity_type}: ${e.failure.message}`;
    case "WorkflowFailed": case "WorkflowCompensationFailed": return `${e.failure.type}: ${e.failure.message}`;
    case "WorkflowCancelRequested": case "WorkflowTerminated": return e.reason || "";
    case "WorkflowContinuedAsNew": return `new run ${e.new_run_id}`;
    case "CompensationRepaired":
      return `${e.action}${e.activity_type ? ` ${e.activity_type}` : ""} by ${e.operator || "?"}${e.reason ? `: ${e.reason}` : ""}`;
    case "MarkerRecorded": return `${e.marker_name} ${e.marker_id}`;
    case "WorkflowPaused": case "WorkflowUnpaused":
      return `by ${e.operator || "?"}${e.reason ? `: ${e.reason}` : ""}`;
    case "InputDeferred": return `held: ${e.kind}${e.name ? ` ${e.name}` : ""}`;
    default: return "";
  }
}
