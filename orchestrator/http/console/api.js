// The HTTP API, called with the token the user typed in (kept in sessionStorage only:
// it is gone when the tab closes, and never part of the page the server sends).

const KEY = "saga-console-token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// what the token may do ("admin" or "read"), asked once per token and kept in memory
let roleAsked = null;

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  roleAsked = null;
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** "admin" or "read": the role of the token (GET /v1/whoami); actions are offered to
 * admin tokens only. A failed ask is not kept, so the next view asks again. */
export function role() {
  if (!roleAsked) {
    roleAsked = call("GET", "/v1/whoami").then((answer) => answer.role, (error) => {
      roleAsked = null;
      throw error;
    });
  }
  return roleAsked;
}

async function call(method, path, body, raw = false) {
  const headers = { Authorization: `Bearer ${token() || ""}` };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    setToken(null);
    window.dispatchEvent(new Event("saga-unauthorized"));
  }
  if (!response.ok) {
    let code = "http_error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const error = await response.json();
      code = error.error || code;
      message = error.message || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, code, message);
  }
  return raw ? response.text() : response.json();
}

const wf = (id) => `/v1/workflows/${encodeURIComponent(id)}`;
const sc = (id) => `/v1/schedules/${encodeURIComponent(id)}`;
const bt = (id) => `/v1/batches/${encodeURIComponent(id)}`;
const runQuery = (runId) => (runId ? `?run_id=${encodeURIComponent(runId)}` : "");

export const api = {
  stats: () => call("GET", "/v1/stats"),
  list: (params) => call("GET", `/v1/workflows?${params}`),
  describe: (id, runId) => call("GET", wf(id) + runQuery(runId)),
  history: (id, runId) => call("GET", `${wf(id)}/history${runQuery(runId)}`),
  replayHistory: (id, runId) =>
    call("GET", `${wf(id)}/history?format=replay${runId ? `&run_id=${encodeURIComponent(runId)}` : ""}`, undefined, true),
  result: (id) => call("GET", `${wf(id)}/result`),
  signal: (id, name, args) => call("POST", `${wf(id)}/signals/${encodeURIComponent(name)}`, { args }),
  cancel: (id, reason) => call("POST", `${wf(id)}/cancel`, { reason }),
  terminate: (id, reason) => call("POST", `${wf(id)}/terminate`, { reason }),
  pause: (id, reason) => call("POST", `${wf(id)}/pause`, { reason }),
  unpause: (id, reason) => call("POST", `${wf(id)}/unpause`, { reason }),
  // runId: the run whose event numbers the caller saw (null: the workflow's latest run);
  // the point: eventSeq, else just before beforeBuild's first decision, else the last decision
  reset: (id, reason, eventSeq, excludeSignals, runId, beforeBuild) => call("POST", `${wf(id)}/reset${runQuery(runId)}`,
    { reason, exclude_signals: excludeSignals, ...(eventSeq ? { event_seq: eventSeq } : {}),
      ...(beforeBuild ? { before_build: beforeBuild } : {}) }),
  stack: (id, runId) => call("GET", `${wf(id)}/stack${runQuery(runId)}`),
  // retry: null (each failed compensation's own policy) or {max_attempts: n, ...}
  repairRetry: (id, runId, reason, retry) =>
    call("POST", `${wf(id)}/repair${runQuery(runId)}`, { reason, ...(retry ? { retry } : {}) }),
  repairSkip: (id, runId, reason, activityType) =>
    call("POST", `${wf(id)}/repair${runQuery(runId)}`, { reason, skip: activityType }),
  batches: {
    list: () => call("GET", "/v1/batches"),
    describe: (id) => call("GET", bt(id)),
    dryRun: (spec) => call("POST", "/v1/batches", { ...spec, dry_run: true }),
    start: (spec) => call("POST", "/v1/batches", spec),
    cancel: (id, reason) => call("POST", `${bt(id)}/cancel`, { reason }),
  },
  schedules: () => call("GET", "/v1/schedules"),
  schedule: {
    pause: (id) => call("POST", `${sc(id)}/pause`, { note: "paused from the console" }),
    unpause: (id) => call("POST", `${sc(id)}/unpause`, {}),
    trigger: (id) => call("POST", `${sc(id)}/trigger`, {}),
    delete: (id) => call("DELETE", sc(id)),
  },
  deadLetters: (fromOffset, limit) => call("GET", `/v1/dead-letters?from_offset=${fromOffset}&limit=${limit}`),
  redrive: (fromOffset, toOffset) =>
    call("POST", "/v1/dead-letters/redrive", { from_offset: fromOffset, to_offset: toOffset }),
};
