// The console's entry point: login, hash routing (#/runs, #/runs/<id>, #/batches,
// #/schedules, #/dead-letters)
// and live refresh: the shown view polls the API every second while visible.

import { api, setToken, token } from "./api.js";
import { batchesView } from "./batches.js";
import { h, replace } from "./dom.js";
import { deadLettersView } from "./deadletters.js";
import { runView } from "./run.js";
import { runsView } from "./runs.js";
import { schedulesView } from "./schedules.js";

const REFRESH_MS = 1000;
const main = document.getElementById("main");
const logout = document.getElementById("logout");
let current = null;

function login(message) {
  logout.hidden = true;
  const input = h("input", {
    type: "password", id: "token", name: "token", autocomplete: "off", required: true,
    placeholder: "API token", size: 40,
  });
  const form = h("form", { id: "login", class: "card" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API token of this server (saga dev writes its admin token to the file it names when it starts). "
      + "It is kept in this tab only (sessionStorage) and sent with each API call."),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
    h("label", {}, "Token ", input),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await api.stats();
    } catch (error) {
      // 503 (no visibility database) still proves the token; 401 does not
      if (error.status === 401 || error.status === 403) {
        login("That token was refused.");
        return;
      }
    }
    route();
  });
  replace(main, form);
  input.focus();
}

function route() {
  if (current) current.stop();
  current = null;
  if (!token()) {
    login();
    return;
  }
  logout.hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  document.getElementById("nav-runs").classList.toggle("active", path.startsWith("/runs"));
  document.getElementById("nav-dlq").classList.toggle("active", path === "/dead-letters");
  document.getElementById("nav-schedules").classList.toggle("active", path === "/schedules");
  document.getElementById("nav-batches").classList.toggle("active", path === "/batches");
  if (path.startsWith("/runs/")) {
    current = runView(main, decodeURIComponent(path.slice("/runs/".length)), params);
  } else if (path === "/batches") {
    current = batchesView(main, params);
  } else if (path === "/schedules") {
    current = schedulesView(main);
  } else if (path === "/dead-letters") {
    current = deadLettersView(main, params);
  } else {
    current = runsView(main, params);
  }
}

setInterval(() => {
  if (current && current.live() && document.visibilityState === "visible") current.refresh();
}, REFRESH_MS);
window.addEventListener("hashchange", route);
window.addEventListener("saga-unauthorized", () => {
  if (current) current.stop();
  current = null;
  login("The server refused the token (401); sign in again.");
});
logout.addEventListener("click", () => {
  setToken(null);
  route();
});
route();
