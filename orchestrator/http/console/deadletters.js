// Dead letters: why each record was refused, where it came from, a look at it, and
// redrive (send it back to its topic) for one record at a time.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { errorLine, makeView } from "./view.js";

const PAGE = 50;

function preview(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  // control characters (binary Avro) shown as dots, so the readable parts stand out
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffd]/g, "·");
}

export function deadLettersView(main, params) {
  const from = Number(params.get("from") || 0);
  const message = h("p", { id: "message", role: "status" });
  const slot = h("div");
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  replace(main, h("section", {},
    h("div", { class: "title-row" }, h("h1", {}, "Dead letters"), h("label", { class: "live" }, live, " live")),
    h("p", { class: "muted" }, "Records the engine or a worker refused, with the reason. Redrive sends one back to the topic it came from (at least once: redrive each record once)."),
    message, slot));
  const say = (text, bad) => {
    message.className = bad ? "error" : "ok";
    message.textContent = text;
  };
  const redrive = async (letter) => {
    const where = `${letter.source.topic}/${letter.source.partition}`;
    if (!window.confirm(`Redrive dead letter ${letter.offset} to ${where}?`)) return;
    try {
      const answer = await api.redrive(letter.offset, letter.offset + 1);
      say(`Dead letter ${letter.offset}: ${answer.redriven} record(s) sent back to ${where}.`, false);
    } catch (error) {
      say(error.status === 403 ? "This token is read-only: redrive needs an admin token." : error.message, true);
    }
  };
  return makeView(async () => {
    try {
      const page = await api.deadLetters(from, PAGE);
      if (!page.dead_letters.length) {
        replace(slot, h("p", { class: "muted", id: "no-dead-letters" }, "No dead letters."));
        return;
      }
      replace(slot,
        h("table", { id: "dead-letters" },
          h("thead", {}, h("tr", {}, ["offset", "reason", "from", "key", "record", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.dead_letters.map((d) => h("tr", { dataset: { offset: d.offset } },
            h("td", { class: "num" }, String(d.offset)),
            h("td", { class: "reason" }, d.reason),
            h("td", {}, `${d.source.topic}/${d.source.partition}@${d.source.offset}`),
            h("td", {}, d.key ?? "-"),
            h("td", {}, h("details", {}, h("summary", {}, `${d.value_bytes} bytes, ${d.headers.length} headers`),
              h("pre", {}, d.headers.map(([k, v]) => `${k}: ${v}`).join("\n")),
              h("pre", { class: "preview" }, preview(d.value_preview_base64)))),
            h("td", {}, h("button", { type: "button", class: "redrive", onclick: () => redrive(d) }, "Redrive")))))),
        h("div", { class: "pager" },
          from > 0 ? h("a", { href: `#/dead-letters?from=${Math.max(0, from - PAGE)}` }, "← earlier") : null,
          page.next_offset !== null ? h("a", { href: `#/dead-letters?from=${page.next_offset}` }, "later →") : null));
    } catch (error) {
      replace(slot, errorLine(error));
    }
    // each read opens a Kafka consumer on the server: every 5 s is enough here
  }, { live: () => live.checked && !document.querySelector("#dead-letters details[open]"), everyMs: 5000 });
}
