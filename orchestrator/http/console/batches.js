// Batches: the batch jobs with their progress (each described by its shard), cancel a
// running one, and start one on the runs a filter matches (the Runs page's filter comes
// along): a dry run first lists what it would touch, then a confirmation starts it.

import { api, role } from "./api.js";
import { badge, h, replace, time } from "./dom.js";
import { STATUSES } from "./runs.js";
import { errorLine, makeView } from "./view.js";

const SHOWN = 20; // batches described on each refresh (newest first)
const PREVIEW = 20; // runs of a dry run listed by id

const OPS = {
  cancel: "each runs its compensations, then ends CANCELLED",
  terminate: "each ends TERMINATED at once, without compensation",
  pause: "each is held: it decides nothing until unpaused",
  unpause: "each applies what it held while paused, and goes on",
  signal: "each receives the signal",
  reset: "each gets a new run that replays its history up to the reset point and decides again from there; an open one ends TERMINATED",
};

function say(message, text, bad) {
  message.className = bad ? "error" : "ok";
  message.textContent = text;
}

function forbidden(error, what) {
  return error.status === 403 ? `This token is read-only: ${what} needs an admin token.` : error.message;
}

/** `key:value ...` as the API's search object (a value that is JSON keeps its type). */
function searchOf(text) {
  const terms = {};
  for (const term of text.split(/\s+/).filter(Boolean)) {
    const at = term.indexOf(":");
    if (at < 1) throw new Error(`Search terms are key:value, got "${term}".`);
    const raw = term.slice(at + 1);
    try {
      terms[term.slice(0, at)] = JSON.parse(raw);
    } catch {
      terms[term.slice(0, at)] = raw;
    }
  }
  return terms;
}

function describeFilter(f) {
  const parts = [];
  if (f.workflow_type) parts.push(`type ${f.workflow_type}`);
  if (f.status) parts.push(`status ${f.status}`);
  if (f.build_id) parts.push(`build ${f.build_id}`);
  for (const [k, v] of Object.entries(f.search || {})) parts.push(`${k}:${JSON.stringify(v)}`);
  if (f.started_after) parts.push(`started after ${f.started_after}`);
  if (f.started_before) parts.push(`started before ${f.started_before}`);
  return parts.join(", ") || "every run";
}

function describeOperation(op) {
  const parts = [op.op];
  if (op.signal_name) parts.push(`${op.signal_name}(${JSON.stringify(op.signal_args || []).slice(1, -1)})`);
  if (op.bad_build) parts.push(`before build ${op.bad_build}`);
  if (op.event_seq) parts.push(`to event ${op.event_seq}`);
  if (op.exclude_signals) parts.push("without later signals");
  if (op.reason) parts.push(`reason: ${op.reason}`);
  if (op.operator) parts.push(`by ${op.operator}`);
  return parts.join(" ");
}

/** The form that starts a batch: a filter (prefilled from the Runs page), an operation,
 * a dry run, then the start (enabled only for the spec the dry run showed). */
function startForm(params, message, started) {
  const status = h("select", { id: "batch-status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const type = h("input", { id: "batch-type", placeholder: "workflow type", value: params.get("type") || "" });
  const search = h("input", { id: "batch-search", placeholder: "key:value ...", size: 20, value: params.get("search") || "" });
  const build = h("input", { id: "batch-build", placeholder: "build id", size: 12, value: params.get("build") || "" });
  const from = h("input", { id: "batch-from", type: "datetime-local", value: params.get("from") || "" });
  const to = h("input", { id: "batch-to", type: "datetime-local", value: params.get("to") || "" });
  const op = h("select", { id: "batch-op" }, Object.keys(OPS).map((o) => h("option", { value: o }, o)));
  const reason = h("input", { id: "batch-reason", placeholder: "reason (terminate: required)", size: 24 });
  const signalName = h("input", { id: "batch-signal-name", placeholder: "signal name" });
  const signalArgs = h("input", { id: "batch-signal-args", placeholder: "args as a JSON list", value: "[]" });
  const badBuild = h("input", { id: "batch-bad-build", placeholder: "bad build (default: last decision)", size: 24 });
  const exclude = h("input", { id: "batch-exclude-signals", type: "checkbox" });
  const rate = h("input", { id: "batch-rate", type: "number", min: "0", step: "any", value: "10", size: 5,
    title: "operations per second at most (0: as fast as the shards answer)" });
  const batchId = h("input", { id: "batch-id", placeholder: "batch id (default: <op>-<time>)", size: 24 });
  const preview = h("div", { id: "batch-preview" });
  const dry = h("button", { type: "button", id: "batch-dry-run" }, "Dry run");
  const start = h("button", { type: "button", id: "batch-start", class: "danger", disabled: true }, "Start batch");
  const signalPart = h("div", { class: "action" }, signalName, signalArgs);
  const resetPart = h("div", { class: "action" }, badBuild,
    h("label", { title: "signals received after the reset point are not sent to the new runs" }, exclude, " leave out later signals"));
  let previewed = null; // the spec (as JSON text) the last dry run was for, and its count
  let count = 0;

  const spec = () => {
    const filter = {
      workflow_type: type.value.trim() || null,
      status: status.value || null,
      build_id: build.value.trim() || null,
      search: searchOf(search.value),
      started_after: from.value ? new Date(from.value).toISOString() : null,
      started_before: to.value ? new Date(to.value).toISOString() : null,
    };
    const operation = { op: op.value, reason: reason.value.trim() };
    if (op.value === "signal") {
      let args;
      try {
        args = JSON.parse(signalArgs.value || "[]");
      } catch {
        args = null;
      }
      if (!Array.isArray(args)) throw new Error("Signal arguments must be a JSON list.");
      Object.assign(operation, { signal_name: signalName.value.trim(), signal_args: args });
    }
    if (op.value === "reset") {
      if (badBuild.value.trim()) operation.bad_build = badBuild.value.trim();
      operation.exclude_signals = exclude.checked;
    }
    const body = { operation, filter, rate: Number(rate.value || 0) };
    if (batchId.value.trim()) body.batch_id = batchId.value.trim();
    return body;
  };
  const changed = () => {
    signalPart.hidden = op.value !== "signal";
    resetPart.hidden = op.value !== "reset";
    let now = null;
    try {
      now = JSON.stringify(spec());
    } catch {
      // not a valid spec yet: the dry run says why
    }
    start.disabled = now === null || now !== previewed;
  };
  dry.addEventListener("click", async () => {
    let body;
    try {
      body = spec();
    } catch (error) {
      say(message, error.message, true);
      return;
    }
    try {
      const answer = await api.batches.dryRun(body);
      previewed = JSON.stringify(body);
      count = answer.count;
      replace(preview,
        h("p", { id: "batch-would" }, `A ${body.operation.op} batch would touch ${answer.count}${answer.truncated ? "+" : ""} run(s) `
          + `matching ${describeFilter(body.filter)} (runs that start later are left out).`),
        answer.runs.length ? h("ul", { class: "preview-runs" }, answer.runs.slice(0, PREVIEW).map((r) => h("li", {},
          h("a", { href: `#/runs/${encodeURIComponent(r.workflow_id)}?run_id=${encodeURIComponent(r.run_id)}` }, r.workflow_id),
          " ", badge(r.status)))) : null,
        answer.runs.length > PREVIEW ? h("p", { class: "muted" }, `and ${answer.runs.length - PREVIEW} more`) : null);
      say(message, "Dry run done: nothing was changed. Check the runs, then start the batch.", false);
    } catch (error) {
      previewed = null;
      replace(preview);
      say(message, forbidden(error, "a batch"), true);
    }
    changed();
  });
  start.addEventListener("click", async () => {
    let body;
    try {
      body = spec();
    } catch (error) {
      say(message, error.message, true);
      return;
    }
    if (JSON.stringify(body) !== previewed) { changed(); return; }
    const o = body.operation;
    const what = o.op === "signal" ? `signal ${o.signal_name}` : o.op;
    const question = `Start a ${what} batch on the ${count} run(s) matching ${describeFilter(body.filter)}`
      + `${o.reason ? ` (reason: ${o.reason})` : ""}? ${OPS[o.op]}. It runs in the background, at most `
      + `${body.rate ? `${body.rate} runs` : "as many runs as the shards answer"} per second; Cancel stops it after the page under way.`;
    if (!window.confirm(question)) return;
    try {
      const answer = await api.batches.start(body);
      previewed = null;
      replace(preview);
      say(message, `Batch ${answer.batch.batch_id} started.`, false);
      started();
    } catch (error) {
      say(message, forbidden(error, "a batch"), true);
    }
    changed();
  });
  const form = h("section", { class: "card", id: "batch-start-form" },
    h("h2", {}, "Start a batch (admin token)"),
    h("div", { class: "filters" },
      h("label", {}, "Status ", status), h("label", {}, "Type ", type),
      h("label", { title: "search attributes: key:value, space-separated (AND)" }, "Search ", search),
      h("label", {}, "Build ", build), h("label", {}, "Started from ", from), h("label", {}, "to ", to)),
    h("div", { class: "filters" },
      h("label", {}, "Operation ", op), h("label", {}, "Reason ", reason), h("label", {}, "Rate /s ", rate),
      h("label", {}, "Batch id ", batchId)),
    signalPart, resetPart,
    h("div", { class: "action" }, dry, start),
    preview);
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  changed();
  return form;
}

function progress(b) {
  const t = b.totals;
  const processed = t.done + t.skipped + t.failed + t.in_doubt;
  const total = b.total ?? null;
  return h("div", { class: "progress-cell" },
    total ? h("progress", { max: String(total), value: String(Math.min(processed, total)) }) : null,
    h("span", { class: "progress-text" }, `${processed} / ${total ?? "?"}`),
    h("div", { class: "muted" }, `${t.done} done, ${t.skipped} skipped, ${t.failed} failed`,
      t.in_doubt ? `, ${t.in_doubt} in doubt` : ""));
}

function samples(title, sample) {
  const entries = Object.entries(sample || {});
  if (!entries.length) return null;
  return [h("h3", {}, title), h("ul", {}, entries.map(([run, why]) => h("li", {}, h("code", {}, run), ` ${why}`)))];
}

function details(b) {
  return h("details", {}, h("summary", {}, "describe"),
    h("dl", { class: "meta" },
      h("dt", {}, "operation"), h("dd", {}, describeOperation(b.operation)),
      h("dt", {}, "filter"), h("dd", {}, describeFilter(b.filter)),
      h("dt", {}, "rate"), h("dd", {}, b.rate ? `${b.rate} per second` : "unlimited"),
      h("dt", {}, "pages"), h("dd", {}, `${b.pages} of ${b.page_size} (${b.listed} runs listed)`),
      h("dt", {}, "updated"), h("dd", {}, time(b.updated_at)),
      b.cancel_reason ? [h("dt", {}, "cancelled"), h("dd", {}, b.cancel_reason)] : null),
    samples("Skipped (sample)", b.totals.skipped_sample),
    samples("Failed (sample)", b.totals.failed_sample));
}

function batchRow(entry, described, mayAct, cancel) {
  if (!described.ok) {
    return h("tr", { dataset: { batch: entry.batch_id } }, h("td", {}, entry.batch_id),
      h("td", { colspan: "5" }, errorLine(described.error)));
  }
  const b = described.batch;
  return h("tr", { dataset: { batch: b.batch_id, state: b.status } },
    h("td", {}, b.batch_id),
    h("td", {}, b.operation.op),
    h("td", {}, h("span", { class: `badge status-${b.status}`, "data-state": b.status }, b.status)),
    h("td", {}, progress(b)),
    h("td", {}, time(b.created_at)),
    h("td", {}, details(b),
      mayAct && b.status === "running"
        ? h("button", { type: "button", class: "danger batch-cancel", onclick: () => cancel(b) }, "Cancel")
        : null));
}

export function batchesView(main, params) {
  const message = h("p", { id: "message", role: "status" });
  const formSlot = h("div");
  const slot = h("div");
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  replace(main, h("section", {},
    h("div", { class: "title-row" }, h("h1", {}, "Batches"), h("label", { class: "live" }, live, " live")),
    h("p", { class: "muted" }, "A batch applies one operation to every run a filter matches, as a durable job on the server "
      + "(rate limited, resumed after a crash). Its progress counts each run once."),
    message, formSlot, slot));
  let mayAct = true;
  let view = null;
  const cancel = async (b) => {
    const reason = window.prompt(`Cancel batch ${b.batch_id}? It stops after the page under way; `
      + "the runs it already dealt with stay as they are. Reason (recorded):", "");
    if (reason === null) return;
    try {
      await api.batches.cancel(b.batch_id, reason);
      say(message, `Batch ${b.batch_id}: cancel accepted.`, false);
    } catch (error) {
      say(message, forbidden(error, "cancel"), true);
    }
    view.refresh();
  };
  role().then((r) => {
    mayAct = r !== "read";
    replace(formSlot, mayAct ? startForm(params, message, () => view.refresh())
      : h("p", { class: "muted", id: "read-only" }, "This token is read-only: starting and cancelling batches need an admin token."));
  }, () => replace(formSlot, startForm(params, message, () => view.refresh())));
  view = makeView(async () => {
    try {
      const found = await api.batches.list();
      if (!found.batches.length) {
        replace(slot, h("p", { class: "muted", id: "no-batches" }, "No batches."));
        return;
      }
      const shown = found.batches.slice(0, SHOWN);
      const described = await Promise.all(shown.map((b) => api.batches.describe(b.batch_id).then(
        (answer) => ({ ok: true, batch: answer.batch }), (error) => ({ ok: false, error }))));
      replace(slot,
        h("table", { id: "batches" },
          h("thead", {}, h("tr", {}, ["Batch", "Operation", "State", "Progress (runs)", "Started", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, shown.map((b, i) => batchRow(b, described[i], mayAct, cancel)))),
        found.batches.length > SHOWN ? h("p", { class: "muted" }, `${found.batches.length - SHOWN} older batch(es) not shown (saga batch list)`) : null);
    } catch (error) {
      replace(slot, errorLine(error));
    }
  }, { live: () => live.checked && !document.querySelector("#batches details[open]"), everyMs: 2000 });
  return view;
}
