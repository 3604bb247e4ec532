// One run: status, input and result, steps and compensations, pending work, the
// failure with its cause chain, the full timeline, where an open run waits (its
// stack), and the admin actions (repair of a failed compensation among them).

import { api, role } from "./api.js";
import { badge, h, replace, time, value } from "./dom.js";
import { fold, summary } from "./timeline.js";
import { errorLine, makeView } from "./view.js";

const OPEN = new Set(["RUNNING", "COMPENSATING"]);

function section(title, id, ...body) {
  return h("section", { class: "card", id }, h("h2", {}, title), ...body);
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

/** A failure and its causes, each with its type, message and remote stack trace. */
export function failureChain(failure) {
  const levels = [];
  for (let f = failure; f; f = f.cause) levels.push(f);
  return h("ol", { class: "causes" }, levels.map((f, i) => h("li", { class: "cause" },
    h("div", {}, i ? h("span", { class: "muted" }, "caused by ") : null,
      h("b", { class: "failure-type" }, f.type), ": ", h("span", { class: "failure-message" }, f.message),
      f.non_retryable ? h("span", { class: "badge" }, "non-retryable") : null),
    f.stack_trace ? h("details", { class: "stack" }, h("summary", {}, "stack trace"), h("pre", {}, f.stack_trace)) : null)));
}

function attemptsCell(a) {
  return h("ol", { class: "attempts" }, a.attempts.map((t) => h("li", {},
    `attempt ${t.attempt}: ${t.outcome}`, t.retryAt ? `, retry at ${new Date(t.retryAt).toLocaleTimeString()}` : "",
    t.failure ? h("details", {}, h("summary", {}, `${t.failure.type}: ${t.failure.message}`), failureChain(t.failure)) : null)));
}

function activityRows(list) {
  return list.map((a) => h("tr", { dataset: { activity: a.type, state: a.state } },
    h("td", { class: "num" }, String(a.seq)), h("td", {}, a.type), h("td", {}, badge(a.state)),
    h("td", {}, a.attempts.length ? attemptsCell(a) : h("span", { class: "muted" }, "no attempt finished yet"))));
}

/** Ask `question`; if the user agrees, `call()`, then say `done` or the API's error. */
async function perform(say, question, done, call) {
  if (!window.confirm(question)) return;
  try {
    await call();
    say(done, false);
  } catch (error) {
    say(error.status === 403 ? "This token is read-only: actions need an admin token." : error.message, true);
  }
}

/** The builds that made decisions in `events`, in order, each with its first decision's
 * seq: the points "just before build X" a reset can go back to. */
function buildsOf(events) {
  const first = new Map();
  for (const e of events) {
    if (e.build_id && !first.has(e.build_id)) first.set(e.build_id, e.seq);
  }
  return [...first].map(([build, seq]) => ({ build, seq }));
}

/** The options of the reset's build choice, kept in step with the history on each
 * refresh (the chosen build stays chosen). */
function fillBuilds(select, events) {
  if (!select) return;
  const builds = buildsOf(events);
  const key = builds.map((b) => `${b.build}@${b.seq}`).join(" ");
  if (select.dataset.builds === key) return;
  const chosen = select.value;
  select.dataset.builds = key;
  replace(select, h("option", { value: "" }, "or before a build's first decision..."),
    builds.map((b) => h("option", { value: b.build, dataset: { seq: b.seq } }, `before build ${b.build} (event ${b.seq})`)));
  select.value = builds.some((b) => b.build === chosen) ? chosen : "";
}

function actions(id, runId, status, paused, events, say) {
  const run = (question, done, call) => perform(say, question, done, call);
  const resetSeq = h("input", { id: "reset-event", type: "number", min: "1", placeholder: "event # (default: the last decision)",
    title: "an event's number: type it, or click it in the timeline" });
  const resetBuild = h("select", { id: "reset-build",
    title: "reset to just before the first decision a worker of this build made (saga worker --build-id)" });
  fillBuilds(resetBuild, events);
  const resetReason = h("input", { id: "reset-reason", placeholder: "reason (required)" });
  const resetExclude = h("input", { id: "reset-exclude-signals", type: "checkbox" });
  const reset = h("div", { class: "action" }, resetSeq, resetBuild, resetReason,
    h("label", { title: "signals received after the point are not sent to the new run" }, resetExclude, " leave out later signals"),
    h("button", { type: "button", id: "reset", class: "danger", onclick: () => {
      if (!resetReason.value.trim()) { say("Resetting needs a reason.", true); return; }
      const seq = resetSeq.value ? Number(resetSeq.value) : null;
      const build = resetBuild.value || null;
      if (seq && build) { say("Reset to an event or to before a build, not both.", true); return; }
      const picked = seq && document.querySelector(`#timeline li[data-seq="${seq}"]`);
      const firstOfBuild = build && resetBuild.selectedOptions[0].dataset.seq;
      const point = seq ? `event ${seq}${picked ? ` (${picked.dataset.type})` : ""}`
        : build ? `just before the first decision of build ${build} (event ${firstOfBuild})` : "its last decision";
      const signals = resetExclude.checked ? "left out" : "sent to it again";
      run(`Reset ${id} to ${point}? A new run replays the history up to there with the code deployed now and `
        + `decides again from there; signals received after that point are ${signals}; an open run ends TERMINATED.`,
        `${id} was reset: a new run goes on from ${point}.`,
        async () => {
          const next = await api.reset(id, resetReason.value, seq, resetExclude.checked, runId, build);
          location.hash = `#/runs/${encodeURIComponent(id)}?run_id=${encodeURIComponent(next.run_id)}`;
        });
    } }, "Reset"));
  if (!OPEN.has(status)) return section("Actions (admin token)", "actions", reset);
  const pauseReason = h("input", { id: "pause-reason", placeholder: "reason (optional)" });
  const pausing = paused
    ? h("div", { class: "action" }, pauseReason,
      h("button", { type: "button", id: "unpause", onclick: () =>
        run(`Unpause ${id}? What it held while paused is applied now.`, `${id} is running again.`,
          () => api.unpause(id, pauseReason.value)) }, "Unpause"))
    : h("div", { class: "action" }, pauseReason,
      h("button", { type: "button", id: "pause", onclick: () =>
        run(`Pause ${id}? It decides nothing until unpaused; what arrives is held.`, `${id} is paused.`,
          () => api.pause(id, pauseReason.value)) }, "Pause"));
  const signalName = h("input", { id: "signal-name", placeholder: "signal name", required: true });
  const signalArgs = h("input", { id: "signal-args", placeholder: "args as a JSON list, e.g. [1]", value: "[]" });
  const cancelReason = h("input", { id: "cancel-reason", placeholder: "reason (optional)" });
  const terminateReason = h("input", { id: "terminate-reason", placeholder: "reason (required)" });
  return section("Actions (admin token)", "actions",
    h("div", { class: "action" }, signalName, signalArgs,
      h("button", { type: "button", id: "signal", onclick: () => {
        let args;
        try {
          args = JSON.parse(signalArgs.value || "[]");
          if (!Array.isArray(args)) throw new Error("not a list");
        } catch {
          say("Signal arguments must be a JSON list.", true);
          return;
        }
        if (!signalName.value) { say("Name the signal.", true); return; }
        run(`Send signal ${signalName.value} to ${id}?`, `Signal ${signalName.value} delivered to ${id}.`,
          () => api.signal(id, signalName.value, args));
      } }, "Signal")),
    // a compensating run is already undoing its steps: nothing to cancel
    status === "RUNNING" ? h("div", { class: "action" }, cancelReason,
      h("button", { type: "button", id: "cancel", onclick: () =>
        run(`Cancel ${id}? It runs its compensations.`, `${id} accepted the cancellation.`,
          () => api.cancel(id, cancelReason.value)) }, "Cancel")) : null,
    h("div", { class: "action" }, terminateReason,
      h("button", { type: "button", id: "terminate", class: "danger", onclick: () => {
        if (!terminateReason.value.trim()) { say("Terminating needs a reason.", true); return; }
        run(`Terminate ${id}? No more code and no compensation runs.`, `${id} is terminated.`,
          () => api.terminate(id, terminateReason.value));
      } }, "Terminate")),
    pausing, reset);
}

/** One task of the stack: what it awaits, where (its innermost workflow-code frame),
 * and its frames innermost first, as a traceback ends. */
function stackTask(task) {
  const frames = [...task.frames].reverse();
  const where = frames[0];
  return h("div", { class: "stack-task", dataset: { task: task.task } },
    h("p", {}, h("b", {}, task.task), " awaits ", h("span", { class: "awaiting" }, task.awaiting),
      where ? [" at ", h("code", { class: "where" }, `${where.file}:${where.line}`), ` in ${where.function}`] : null),
    frames.length ? h("ol", { class: "frames" }, frames.map((f) =>
      h("li", {}, h("code", {}, `${f.file}:${f.line}`), ` in ${f.function}`))) : null);
}

/** "Where is it stuck?": the stack of an open run (GET /stack, answered by its shard),
 * asked when the panel opens and again on demand; never polled. */
function stackPanel(id, runId) {
  const out = h("div", { id: "stack-tasks" }, h("p", { class: "muted" }, "Asking the run's shard..."));
  const asked = h("span", { class: "muted", id: "stack-asked" });
  const load = async () => {
    try {
      const answer = await api.stack(id, runId);
      replace(out, answer.tasks.length ? answer.tasks.map(stackTask) : h("p", { class: "muted" }, "No task is waiting."));
      replace(asked, `asked at ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      replace(out, errorLine(error));
      replace(asked);
    }
  };
  load();
  return section("Where is it stuck?", "stack",
    h("div", { class: "action" }, h("button", { type: "button", id: "stack-refresh", onclick: load }, "Ask again"), asked),
    out);
}

/** The activity types of the compensations that failed since the last repair. */
function failedCompensations(events) {
  const failed = [];
  for (const e of events) {
    if (e.type === "CompensationRepaired") failed.length = 0;
    else if (e.type === "CompensationFailed" && !failed.includes(e.activity_type)) failed.push(e.activity_type);
  }
  return failed;
}

/** Repair of a COMPENSATION_FAILED run: run its failed compensations again (under their
 * own policy, or with a number of attempts), or skip one with a recorded reason. */
function repairAction(id, runId, events, say) {
  const failed = failedCompensations(events);
  const choice = h("select", { id: "repair-action" },
    h("option", { value: "" }, "retry the failed compensations"),
    failed.map((type) => h("option", { value: type }, `skip ${type}`)));
  const attempts = h("input", { id: "repair-attempts", type: "number", min: "1", placeholder: "attempts (default: their own policy)" });
  const reason = h("input", { id: "repair-reason", placeholder: "reason (required)" });
  const repair = () => {
    if (!reason.value.trim()) { say("A repair needs a reason (it is recorded in the history).", true); return; }
    const skip = choice.value;
    if (skip) {
      perform(say, `Skip the failed compensation ${skip} of ${id}? It counts as done without running; your reason `
        + "is recorded in the history, and the saga's compensation goes on with the compensations after it.",
      `${id}: ${skip} skipped; its compensation goes on.`, () => api.repairSkip(id, runId, reason.value, skip));
      return;
    }
    const n = attempts.value ? Number(attempts.value) : null;
    const policy = n ? `with at most ${n} attempt(s) each` : "under their own retry policy";
    perform(say, `Retry the failed compensations of ${id} (${failed.join(", ") || "as recorded"})? The run is `
      + `COMPENSATING again and runs them ${policy}; the saga's compensation goes on from there.`,
    `${id}: its failed compensations run again.`,
    () => api.repairRetry(id, runId, reason.value, n ? { max_attempts: n } : null));
  };
  return section("Repair the failed compensation (admin token)", "repair",
    h("p", { class: "muted" }, "The compensations that exhausted their policy: ", failed.join(", ") || "-"),
    h("div", { class: "action" }, choice, attempts, reason,
      h("button", { type: "button", id: "repair-run", class: "danger", onclick: repair }, "Repair")));
}

/** Clicking an event's number in the timeline makes that event the reset point. */
function pickResetPoint(slot, say) {
  slot.addEventListener("click", (event) => {
    const seq = event.target.closest && event.target.closest("#timeline li.event > .seq");
    const input = document.getElementById("reset-event");
    if (!seq || !input) return;
    const li = seq.parentElement;
    input.value = li.dataset.seq;
    say(`Reset point: event ${li.dataset.seq} (${li.dataset.type}). Give a reason, then press Reset.`, false);
    const reason = document.getElementById("reset-reason");
    if (reason) reason.focus();
  });
}

/** What a read-only token sees instead of the actions. */
function readOnlyNote() {
  return section("Actions", "actions", h("p", { class: "muted", id: "read-only" },
    "This token is read-only: signal, cancel, terminate, pause, reset and repair need an admin token."));
}

/** The panels built once per status (not on each refresh, so typing is kept): the
 * stack of an open run, and what this token may do to the run (`tokenRole` null when
 * unknown: the actions are offered, and the server still refuses a read token). */
function operatorPanels(stackSlot, actionSlot, id, runId, status, paused, events, tokenRole, say) {
  const mayAct = tokenRole !== "read";
  replace(stackSlot, OPEN.has(status) ? stackPanel(id, runId) : null);
  replace(actionSlot, mayAct
    ? [actions(id, runId, status, paused, events, say), status === "COMPENSATION_FAILED" ? repairAction(id, runId, events, say) : null]
    : readOnlyNote());
}

async function download(id, runId, say) {
  try {
    const text = await api.replayHistory(id, runId);
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const a = h("a", { href: url, download: `${id.replace(/[^A-Za-z0-9._-]/g, "_")}.history.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    say(error.message, true);
  }
}

/** Cancel a child run through the cancel route on its own workflow id: it compensates
 * and ends CANCELLED, and this run hears it as the child's failure. */
function cancelChild(parentId, child, say) {
  return h("button", { type: "button", class: "child-cancel", onclick: () =>
    perform(say, `Cancel child ${child.id} (${child.type}) of ${parentId}? It runs its compensations and ends `
      + `CANCELLED; ${parentId} hears that as the child's failure.`, `${child.id} accepted the cancellation.`,
    () => api.cancel(child.id, `cancelled from the console, on the page of its parent ${parentId}`)) }, "Cancel");
}

function render(head, body, id, runId, described, history, mayAct, say) {
  const wf = described.workflow || {};
  const row = described.visibility || {};
  const status = history.status || wf.status || row.status;
  const runOf = history.run_id || wf.run_id || runId;
  const t = fold(history.events);
  const link = (wid, rid, text) => h("a", { href: `#/runs/${encodeURIComponent(wid)}${rid ? `?run_id=${encodeURIComponent(rid)}` : ""}` }, text);
  const parked = history.parked || row.parked;
  const paused = wf.paused;
  // the activities an operator's pause of their type holds, as the run's shard says
  // (describe answers for the workflow's latest run: only when that is the one shown)
  const held = new Set(wf.run_id === runOf
    ? (wf.pending_activities || []).filter((a) => a.paused).map((a) => a.activity_seq) : []);
  replace(head,
    h("div", { class: "title-row" }, h("h1", { id: "run-id" }, id), h("span", { id: "run-status" }, badge(status)),
      parked ? h("span", { class: "badge parked" }, "PARKED") : null,
      paused ? h("span", { class: "badge parked", id: "paused-badge" }, "PAUSED") : null),
    parked ? h("p", { class: "error", id: "parked" }, `Parked: ${parked}`) : null,
    paused ? h("p", { class: "error", id: "paused" },
      `Paused by ${paused.operator || "?"} since `, time(paused.since), paused.reason ? `: ${paused.reason}` : "") : null,
    h("dl", { class: "meta" },
      h("dt", {}, "type"), h("dd", {}, wf.workflow_type || row.workflow_type || (t.started && t.started.workflow_type) || "-"),
      h("dt", {}, "version"), h("dd", { id: "version" }, String(wf.workflow_version || row.workflow_version || (t.started && t.started.workflow_version) || 1)),
      h("dt", {}, "run"), h("dd", { id: "run-of" }, runOf || "-"),
      h("dt", {}, "task queue"), h("dd", {}, wf.task_queue || row.task_queue || "-"),
      h("dt", {}, "started"), h("dd", {}, time(wf.start_time || row.start_time)),
      h("dt", {}, "closed"), h("dd", {}, time(wf.close_time || row.close_time)),
      h("dt", {}, "events"), h("dd", {}, String(history.events.length)),
      t.parent ? [h("dt", {}, "parent"), h("dd", {}, link(t.parent.id, t.parent.runId, t.parent.id))] : null,
      t.continuedFrom ? [h("dt", {}, "continued from"), h("dd", {}, link(id, t.continuedFrom, t.continuedFrom))] : null,
      t.continuedAs ? [h("dt", {}, "continued as"), h("dd", {}, link(id, t.continuedAs, t.continuedAs))] : null),
    h("p", {}, h("button", { type: "button", id: "download", onclick: () => download(id, runOf, say) }, "Download history (replay JSON)")));
  replace(body,
    section("Input", "input", value(t.started ? t.started.input : null)),
    t.closed && t.closed.type === "WorkflowCompleted" ? section("Result", "result", value(t.closed.result)) : null,
    t.failure ? section("Failure", "failure", failureChain(t.failure),
      t.compensationFailures.length ? [h("h3", {}, "Compensations that failed"), t.compensationFailures.map(failureChain)] : null) : null,
    t.closed && t.closed.type === "WorkflowTerminated" ? section("Terminated", "terminated", t.closed.reason || "(no reason)") : null,
    section("Steps", "steps", t.steps.length
      ? table(["#", "activity", "state", "attempts"], activityRows(t.steps), { class: "steps" })
      : h("p", { class: "muted" }, "No activity yet.")),
    t.compensations.length ? section("Compensations", "compensations",
      t.compensations.map((c) => h("p", { dataset: { state: c.state } }, `saga ${c.sagaId}: `, badge(c.state),
        ` planned: ${c.planned.join(" → ") || "(none)"}`,
        c.cause ? h("span", { class: "muted" }, ` after ${c.cause.type}: ${c.cause.message}`) : null)),
      t.compensationActivities.length ? table(["#", "compensation", "state", "attempts"], activityRows(t.compensationActivities), { class: "steps" }) : null) : null,
    t.pendingActivities.length || t.pendingTimers.length ? section("Pending", "pending",
      t.pendingActivities.map((a) => held.has(a.seq)
        ? h("p", { class: "held", dataset: { seq: a.seq } }, `activity #${a.seq} ${a.type}: ${a.state.toLowerCase()} `,
          h("span", { class: "badge parked", title: "an operator paused this activity type on its task queue (saga activity pause)" },
            "HELD: type paused"))
        : h("p", { dataset: { seq: a.seq } }, `activity #${a.seq} ${a.type}: ${a.state.toLowerCase()}`)),
      t.pendingTimers.map((x) => h("p", {}, `timer ${x.id} fires at `, time(x.fireAt)))) : null,
    t.timers.length ? section("Timers", "timers", table(["timer", "fires at", "state"],
      t.timers.map((x) => h("tr", {}, h("td", {}, x.id), h("td", {}, time(x.fireAt)), h("td", {}, badge(x.state)))))) : null,
    t.signals.length || t.updates.length ? section("Signals and updates", "signals",
      t.signals.map((s) => h("p", {}, time(s.time), ` signal ${s.name} `, h("code", {}, JSON.stringify(s.args)))),
      t.updates.map((u) => h("p", {}, time(u.time), ` update ${u.name} `, badge(u.state), " ", h("code", {}, JSON.stringify(u.args))))) : null,
    t.children.length ? section("Children", "children", table(["#", "type", "workflow", "state", "parent-close policy", ""],
      t.children.map((c) => h("tr", { dataset: { child: c.id, state: c.state } }, h("td", {}, String(c.seq)), h("td", {}, c.type),
        h("td", {}, link(c.id, c.runId, c.id)),
        h("td", {}, badge(c.state), c.cancelRequested ? " cancel requested" : ""),
        h("td", {}, c.parentClosePolicy),
        h("td", {}, mayAct && c.state === "STARTED" ? cancelChild(id, c, say) : null))))) : null,
    section("Timeline", "timeline", h("ol", { class: "timeline" }, history.events.map((e) =>
      h("li", { class: `event ev-${e.type}`, dataset: { type: e.type, seq: e.seq } },
        h("span", { class: "seq" }, String(e.seq)), " ", time(e.time), " ", h("b", {}, e.type), " ", summary(e),
        h("details", {}, h("summary", {}, "fields"), h("pre", { class: "json" }, JSON.stringify(e, null, 2))))))));
}

export function runView(main, id, params) {
  const runId = params.get("run_id");
  const message = h("p", { id: "message", role: "status" });
  const head = h("div");
  const slot = h("div");
  // the action form is built once per status, not on every refresh, so what the user
  // is typing stays where it is
  const actionSlot = h("div");
  const stackSlot = h("div");
  let status = null;
  let shown = null; // the status and pause the action form was built for
  let acted = 0; // when an action last succeeded: the view keeps refreshing a while after
  const say = (text, bad) => {
    message.className = bad ? "error" : "ok";
    message.textContent = text;
    if (!bad) acted = Date.now();
  };
  replace(main, h("p", {}, h("a", { href: "#/runs" }, "← runs")), message, head, stackSlot, actionSlot, slot);
  pickResetPoint(slot, say);
  return makeView(async () => {
    try {
      const [described, history, tokenRole] = await Promise.all([api.describe(id, runId), api.history(id, runId),
        role().catch(() => null)]);
      const open = [...slot.querySelectorAll("details[open]")].map((d) => d.parentElement && d.parentElement.dataset.seq);
      render(head, slot, id, runId, described, history, tokenRole !== "read", say);
      fillBuilds(document.getElementById("reset-build"), history.events);
      const now = history.status || (described.workflow && described.workflow.status);
      const paused = Boolean(described.workflow && described.workflow.paused);
      if (`${now}/${paused}` !== shown) {
        shown = `${now}/${paused}`;
        operatorPanels(stackSlot, actionSlot, id, runId, now, paused, history.events, tokenRole, say);
      }
      for (const seq of open) {
        const d = seq && slot.querySelector(`li[data-seq="${seq}"] > details`);
        if (d) d.open = true;
      }
      status = now;
    } catch (error) {
      replace(slot, errorLine(error));
    }
  }, { live: () => status === null || OPEN.has(status) || Date.now() - acted < 30000 });
}
