// Building elements without HTML strings: every value from the server is set as text,
// never parsed as markup.

/** An element with attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A status badge (its class carries the status for styling and tests). */
export function badge(status) {
  const text = status || "UNKNOWN";
  return h("span", { class: `badge status-${text.toLowerCase()}`, "data-status": text }, text);
}

/** A time as local text, with the ISO form in the tooltip. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "-");
  const when = new Date(iso);
  return h("time", { datetime: iso, title: iso }, when.toLocaleString());
}

const undecoded = (v) => v && typeof v === "object" && !Array.isArray(v) && "encoding" in v && "data_base64" in v;

/** JSON shown as text, or a note for a payload the server could not decode. */
export function value(v) {
  if (Array.isArray(v) && v.some(undecoded)) return h("div", {}, v.map(value));
  if (undecoded(v)) {
    const bytes = Math.floor((v.data_base64.length * 3) / 4);
    return h("span", { class: "encrypted" }, `encoded payload (${v.encoding}, ~${bytes} bytes): the server cannot decode it`);
  }
  return h("pre", { class: "json" }, JSON.stringify(v, null, 2));
}
