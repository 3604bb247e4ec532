// One run: status, input and result, steps and compensations, pending work, the
// failure with its cause chain, the full timeline, and the admin actions.

import { api } from "./api.js";
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

function actions(id, status, paused, say) {
  const run = async (question, done, call) => {
    if (!window.confirm(question)) return;
    try {
      await call();
      say(done, false);
    } catch (error) {
      say(error.status === 403 ? "This token is read-only: actions need an admin token." : error.message, true);
    }
  };
  const resetSeq = h("input", { id: "reset-event", type: "number", min: "1", placeholder: "event # (default: the last decision)" });
  const resetReason = h("input", { id: "reset-reason", placeholder: "reason (required)" });
  const resetExclude = h("input", { id: "reset-exclude-signals", type: "checkbox" });
  const reset = h("div", { class: "action" }, resetSeq, resetReason,
    h("label", { title: "signals received after the point are not sent to the new run" }, resetExclude, " leave out later signals"),
    h("button", { type: "button", id: "reset", class: "danger", onclick: () => {
      if (!resetReason.value.trim()) { say("Resetting needs a reason.", true); return; }
      const seq = resetSeq.value ? Number(resetSeq.value) : null;
      const point = seq ? `event ${seq}` : "its last decision";
      run(`Reset ${id} to ${point}? A new run replays the history up to there; an open run is ended.`,
        `${id} was reset: a new run goes on from ${point}.`,
        async () => {
          const next = await api.reset(id, resetReason.value, seq, resetExclude.checked);
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
    h("div", { class: "action" }, cancelReason,
      h("button", { type: "button", id: "cancel", onclick: () =>
        run(`Cancel ${id}? It runs its compensations.`, `${id} accepted the cancellation.`,
          () => api.cancel(id, cancelReason.value)) }, "Cancel")),
    h("div", { class: "action" }, terminateReason,
      h("button", { type: "button", id: "terminate", class: "danger", onclick: () => {
        if (!terminateReason.value.trim()) { say("Terminating needs a reason.", true); return; }
        run(`Terminate ${id}? No more code and no compensation runs.`, `${id} is terminated.`,
          () => api.terminate(id, terminateReason.value));
      } }, "Terminate")),
    pausing, reset);
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

function render(head, body, id, runId, described, history, say) {
  const wf = described.workflow || {};
  const row = described.visibility || {};
  const status = history.status || wf.status || row.status;
  const runOf = history.run_id || wf.run_id || runId;
  const t = fold(history.events);
  const link = (wid, rid, text) => h("a", { href: `#/runs/${encodeURIComponent(wid)}${rid ? `?run_id=${encodeURIComponent(rid)}` : ""}` }, text);
  const parked = history.parked || row.parked;
  const paused = wf.paused;
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
      t.pendingActivities.map((a) => h("p", {}, `activity #${a.seq} ${a.type}: ${a.state.toLowerCase()}`)),
      t.pendingTimers.map((x) => h("p", {}, `timer ${x.id} fires at `, time(x.fireAt)))) : null,
    t.timers.length ? section("Timers", "timers", table(["timer", "fires at", "state"],
      t.timers.map((x) => h("tr", {}, h("td", {}, x.id), h("td", {}, time(x.fireAt)), h("td", {}, badge(x.state)))))) : null,
    t.signals.length || t.updates.length ? section("Signals and updates", "signals",
      t.signals.map((s) => h("p", {}, time(s.time), ` signal ${s.name} `, h("code", {}, JSON.stringify(s.args)))),
      t.updates.map((u) => h("p", {}, time(u.time), ` update ${u.name} `, badge(u.state), " ", h("code", {}, JSON.stringify(u.args))))) : null,
    t.children.length ? section("Children", "children", table(["#", "type", "workflow", "state", "parent-close policy"],
      t.children.map((c) => h("tr", {}, h("td", {}, String(c.seq)), h("td", {}, c.type),
        h("td", {}, link(c.id, c.runId, c.id)),
        h("td", {}, badge(c.state), c.cancelRequested ? " cancel requested" : ""),
        h("td", {}, c.parentClosePolicy))))) : null,
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
  let status = null;
  let shown = null; // the status and pause the action form was built for
  const say = (text, bad) => {
    message.className = bad ? "error" : "ok";
    message.textContent = text;
  };
  replace(main, h("p", {}, h("a", { href: "#/runs" }, "← runs")), message, head, actionSlot, slot);
  return makeView(async () => {
    try {
      const [described, history] = await Promise.all([api.describe(id, runId), api.history(id, runId)]);
      const open = [...slot.querySelectorAll("details[open]")].map((d) => d.parentElement && d.parentElement.dataset.seq);
      render(head, slot, id, runId, described, history, say);
      const now = history.status || (described.workflow && described.workflow.status);
      const paused = Boolean(described.workflow && described.workflow.paused);
      if (`${now}/${paused}` !== shown) replace(actionSlot, actions(id, now, paused, say));
      shown = `${now}/${paused}`;
      for (const seq of open) {
        const d = seq && slot.querySelector(`li[data-seq="${seq}"] > details`);
        if (d) d.open = true;
      }
      status = now;
    } catch (error) {
      replace(slot, errorLine(error));
    }
  }, { live: () => status === null || OPEN.has(status) });
}
