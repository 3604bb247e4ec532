// Runs: filters (status, type, search attributes, build id, start-time range), counts by status,
// keyset paging, refreshed live; a link to start a batch on the runs the filter matches.

import { api, role } from "./api.js";
import { badge, h, replace, time } from "./dom.js";
import { errorLine, makeView } from "./view.js";

export const STATUSES = [
  "RUNNING", "COMPENSATING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT",
  "COMPENSATION_FAILED", "CONTINUED_AS_NEW",
];
const PAGE = 25;
// cursors of the pages before the shown one, for "Newer"; reset when the filters change
let trail = [];
let trailFilters = "";

function filtersOf(params) {
  const keep = new URLSearchParams();
  for (const key of ["status", "type", "search", "build", "from", "to", "parked"]) {
    for (const v of params.getAll(key)) if (v) keep.append(key, v);
  }
  return keep;
}

function apiQuery(filters, after) {
  const q = new URLSearchParams();
  if (filters.get("status")) q.set("status", filters.get("status"));
  if (filters.get("type")) q.set("type", filters.get("type"));
  if (filters.get("build")) q.set("build_id", filters.get("build"));
  for (const term of (filters.get("search") || "").split(/\s+/).filter(Boolean)) q.append("search", term);
  if (filters.get("from")) q.set("started_after", new Date(filters.get("from")).toISOString());
  if (filters.get("to")) q.set("started_before", new Date(filters.get("to")).toISOString());
  if (filters.get("parked")) q.set("parked", "true");
  q.set("limit", String(PAGE));
  if (after) q.set("after", after);
  return q;
}

function go(filters, after) {
  const q = new URLSearchParams(filters);
  if (after) q.set("after", after);
  location.hash = `#/runs?${q}`;
}

function filterForm(filters) {
  const status = h("select", { name: "status", id: "filter-status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: filters.get("status") === s }, s)));
  const type = h("input", { name: "type", id: "filter-type", placeholder: "workflow type", value: filters.get("type") || "" });
  const search = h("input", { name: "search", id: "filter-search", placeholder: "key:value ...", value: filters.get("search") || "", size: 24 });
  const build = h("input", { name: "build", id: "filter-build", placeholder: "build id", value: filters.get("build") || "", size: 12 });
  const from = h("input", { type: "datetime-local", name: "from", id: "filter-from", value: filters.get("from") || "" });
  const to = h("input", { type: "datetime-local", name: "to", id: "filter-to", value: filters.get("to") || "" });
  const parked = h("input", { type: "checkbox", name: "parked", id: "filter-parked", value: "1", checked: Boolean(filters.get("parked")) });
  const form = h("form", { class: "filters", id: "filters" },
    h("label", {}, "Status ", status),
    h("label", {}, "Type ", type),
    h("label", { title: "search attributes: key:value, space-separated (AND)" }, "Search ", search),
    h("label", { title: "runs a worker of this build (saga worker --build-id) made decisions for" }, "Build ", build),
    h("label", {}, "Started from ", from),
    h("label", {}, "to ", to),
    h("label", { title: "runs that cannot replay their history with the loaded code" }, "Parked only ", parked),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", onclick: () => go(new URLSearchParams(), null) }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    go(next, null);
  });
  status.addEventListener("change", () => form.requestSubmit());
  parked.addEventListener("change", () => form.requestSubmit());
  return form;
}

function countsBar(counts, filters) {
  const total = Object.values(counts.counts).reduce((a, b) => a + b, 0);
  const chip = (label, status, n) => {
    const next = new URLSearchParams(filters);
    if (status) next.set("status", status);
    else next.delete("status");
    const active = (filters.get("status") || "") === (status || "");
    return h("a", { class: `chip${active ? " active" : ""}`, href: `#/runs?${next}`, dataset: { count: status || "ALL" } },
      status ? badge(status) : "all", " ", h("b", {}, String(n)));
  };
  return h("div", { class: "counts", id: "counts" },
    chip("all", "", total),
    Object.entries(counts.counts).sort().map(([s, n]) => chip(s, s, n)));
}

/** "Batch on these runs": the Batches page with this filter, for an admin token. */
function batchLink(filters) {
  const slot = h("span");
  const q = new URLSearchParams(filters);
  q.delete("parked"); // not a batch filter
  role().then((r) => {
    if (r !== "read") {
      replace(slot, h("a", { href: `#/batches?${q}`, id: "batch-these", title: "cancel, terminate, pause, unpause, signal or reset the runs this filter matches (dry run first)" },
        "Batch operation on these runs..."));
    }
  }, () => {});
  return slot;
}

function runsTable(rows) {
  if (!rows.length) return h("p", { class: "muted", id: "no-runs" }, "No runs match.");
  return h("table", { class: "runs", id: "runs" },
    h("thead", {}, h("tr", {}, ["Workflow id", "Type", "Status", "Started", "Closed", "Step", "Events"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: { workflowId: r.workflow_id } },
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(r.workflow_id)}?run_id=${encodeURIComponent(r.run_id)}` }, r.workflow_id)),
      h("td", {}, r.workflow_type),
      h("td", {}, badge(r.status), r.parked ? h("span", { class: "badge parked", title: r.parked }, "PARKED") : null),
      h("td", {}, time(r.start_time)),
      h("td", {}, time(r.close_time)),
      h("td", {}, r.current_step || ""),
      h("td", { class: "num" }, String(r.history_length))))));
}

export function runsView(main, params) {
  const filters = filtersOf(params);
  const after = params.get("after");
  if (filters.toString() !== trailFilters || !after) {
    trail = [];
    trailFilters = filters.toString();
  }
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  const updated = h("span", { class: "muted", id: "updated" });
  const countsSlot = h("div");
  const tableSlot = h("div");
  const pager = h("div", { class: "pager" });
  replace(main,
    h("section", {},
      h("div", { class: "title-row" }, h("h1", {}, "Runs"), h("label", { class: "live" }, live, " live"), updated, batchLink(filters)),
      filterForm(filters), countsSlot, tableSlot, pager));

  return makeView(async () => {
    try {
      const [counts, page] = await Promise.all([api.stats(), api.list(apiQuery(filters, after))]);
      replace(countsSlot, countsBar(counts, filters));
      replace(tableSlot, runsTable(page.workflows));
      replace(pager,
        trail.length || after ? h("button", { type: "button", id: "newer", onclick: () => go(filters, trail.pop()) }, "← Newer") : null,
        page.next ? h("button", { type: "button", id: "older", onclick: () => { trail.push(after); go(filters, page.next); } }, "Older →") : null);
      replace(updated, `updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      replace(tableSlot, errorLine(error));
    }
  }, { live: () => live.checked });
}
