// What every view shares: a refresh that never overlaps itself, and error display.

import { h } from "./dom.js";

/** A view whose `load()` renders into its element; `refresh()` skips while one runs,
 * and until `everyMs` has passed since the last one. */
export function makeView(load, { live = () => true, everyMs = 0 } = {}) {
  let busy = false;
  let stopped = false;
  let last = 0;
  const view = {
    async refresh() {
      if (busy || stopped || Date.now() - last < everyMs) return;
      busy = true;
      last = Date.now();
      try {
        await load();
      } finally {
        busy = false;
      }
    },
    live,
    stop() {
      stopped = true;
    },
    get stopped() {
      return stopped;
    },
  };
  view.refresh();
  return view;
}

/** An error line for a failed call (the server's message, never a stack). */
export function errorLine(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}
