// Schedules: every schedule with its state, next firing and counters; pause, unpause,
// trigger and delete; recent firings (each a link to its run) under each schedule.

import { api } from "./api.js";
import { h, replace, time } from "./dom.js";
import { errorLine, makeView } from "./view.js";

const OUTCOME_CLASS = {
  running: "running", completed: "completed", failed: "failed", cancelled: "cancelled",
  terminated: "terminated", skipped: "cancelled", missed: "failed", buffered: "pending",
};

function when(spec) {
  const parts = spec.cron.map((c) => `cron "${c}"`);
  if (spec.interval_s !== null) parts.push(`every ${spec.interval_s} s`);
  const jitter = spec.jitter_s ? `, jitter ${spec.jitter_s} s` : "";
  return `${parts.join(" + ")} (${spec.time_zone}${jitter})`;
}

function outcome(text) {
  return h("span", { class: `badge status-${OUTCOME_CLASS[text] || "pending"}`, "data-outcome": text }, text);
}

function recent(schedule) {
  if (!schedule.recent.length) return h("p", { class: "muted" }, "No firing yet.");
  return h("table", { class: "recent" },
    h("thead", {}, h("tr", {}, ["nominal time", "kind", "outcome", "workflow", "started", "closed"].map((c) => h("th", {}, c)))),
    h("tbody", {}, schedule.recent.slice().reverse().map((a) => h("tr", {},
      h("td", {}, time(a.nominal_time)),
      h("td", {}, a.kind),
      h("td", {}, outcome(a.outcome)),
      h("td", {}, a.started_at ? h("a", { href: `#/runs/${encodeURIComponent(a.workflow_id)}` }, a.workflow_id) : a.workflow_id),
      h("td", {}, time(a.started_at)),
      h("td", {}, time(a.closed_at))))));
}

function card(entry, act) {
  const s = entry.schedule;
  if (!s) {
    return h("section", { class: "card schedule", dataset: { schedule: entry.schedule_id } },
      h("h2", {}, entry.schedule_id), h("p", { class: "error" }, "Its shard did not answer in time."));
  }
  const id = s.schedule_id;
  return h("section", { class: "card schedule", dataset: { schedule: id } },
    h("div", { class: "title-row" },
      h("h2", {}, id),
      s.paused ? h("span", { class: "badge status-cancelled", id: `paused-${id}` }, "PAUSED") : h("span", { class: "badge status-running" }, "ACTIVE"),
      h("div", { class: "action" },
        s.paused
          ? h("button", { type: "button", class: "unpause", onclick: () => act(id, "unpause") }, "Unpause")
          : h("button", { type: "button", class: "pause", onclick: () => act(id, "pause") }, "Pause"),
        h("button", { type: "button", class: "trigger", onclick: () => act(id, "trigger") }, "Trigger now"),
        h("button", { type: "button", class: "danger delete", onclick: () => act(id, "delete") }, "Delete"))),
    h("dl", { class: "meta" },
      h("dt", {}, "Fires"), h("dd", {}, when(s.spec)),
      h("dt", {}, "Starts"), h("dd", {}, `${s.action.workflow_type} on ${s.action.task_queue}`),
      h("dt", {}, "Overlap"), h("dd", {}, `${s.policy.overlap}, catch-up window ${s.policy.catchup_window_s} s`),
      s.note ? [h("dt", {}, "Note"), h("dd", {}, s.note)] : null,
      h("dt", {}, "Counts"), h("dd", { class: "counts-line" }, `${s.started} started, ${s.skipped} skipped, ${s.missed} missed`),
      h("dt", {}, "Running"), h("dd", {}, s.running.length ? s.running.map((w) => h("a", { href: `#/runs/${encodeURIComponent(w)}` }, w, " ")) : "-"),
      h("dt", {}, "Next"), h("dd", { class: "next" }, s.next_times.length ? time(s.next_times[0]) : "-")),
    h("details", {}, h("summary", {}, "Recent firings"), recent(s)));
}

export function schedulesView(main) {
  const message = h("p", { id: "message", role: "status" });
  const slot = h("div");
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  replace(main, h("section", {},
    h("div", { class: "title-row" }, h("h1", {}, "Schedules"), h("label", { class: "live" }, live, " live")),
    h("p", { class: "muted" }, "Create schedules with `saga schedule create` or POST /v1/schedules; each firing starts a workflow named after its nominal time."),
    message, slot));
  const say = (text, bad) => {
    message.className = bad ? "error" : "ok";
    message.textContent = text;
  };
  let view = null;
  const act = async (id, verb) => {
    if (verb === "delete" && !window.confirm(`Delete schedule ${id}? Running firings go on.`)) return;
    try {
      const answer = await api.schedule[verb](id);
      say(verb === "trigger" ? `Triggered ${answer.workflow_id}.` : `Schedule ${id}: ${verb}d.`, false);
    } catch (error) {
      say(error.status === 403 ? `This token is read-only: ${verb} needs an admin token.` : error.message, true);
    }
    view.refresh();
  };
  view = makeView(async () => {
    try {
      const found = await api.schedules();
      if (!found.schedules.length) {
        replace(slot, h("p", { class: "muted", id: "no-schedules" }, "No schedules."));
        return;
      }
      replace(slot, h("div", { id: "schedules" }, found.schedules.map((entry) => card(entry, act))));
    } catch (error) {
      replace(slot, errorLine(error));
    }
  }, { live: () => live.checked && !document.querySelector("#schedules details[open]") });
  return view;
}
