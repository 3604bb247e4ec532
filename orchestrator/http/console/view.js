// What every view shares: a refresh that never overlaps itself, and error display.

import { h } from "./dom.js";

/** A view whose `load()` renders into its element; `refresh()` skips while one runs. */
export function makeView(load, { live = () => true } = {}) {
  let busy = false;
  let stopped = false;
  const view = {
    async refresh() {
      if (busy || stopped) return;
      busy = true;
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
