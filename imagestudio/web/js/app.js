// Image Studio page: wires the modules, the account (shared mode) and the
// keyboard. Everything talks to the native API under /api.

import * as api from "./api.js";
import * as actions from "./actions.js";
import * as form from "./form.js";
import * as history from "./history.js";
import * as jobs from "./jobs.js";
import * as mask from "./mask.js";
import * as prompts from "./prompts.js";
import { $, $$, ctx, sentence, toast } from "./state.js";

// --- views ------------------------------------------------------------------------

function showView(name) {
  for (const tab of $$(".tabs [role=tab]")) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
  }
  if (name === "history") ctx.historyShown();
  else document.body.classList.remove("picking");
  const hash = name === "create" ? "" : `#${name}`;
  if (location.hash !== hash) window.history.replaceState(null, "", hash || location.pathname);
}

function initTabs() {
  const tabs = $$(".tabs [role=tab]");
  for (const tab of tabs) {
    tab.addEventListener("click", () => showView(tab.id.slice(4)));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = event.key === "ArrowRight" ? tabs[(i + 1) % tabs.length]
        : event.key === "ArrowLeft" ? tabs[(i - 1 + tabs.length) % tabs.length] : null;
      if (next) { next.focus(); showView(next.id.slice(4)); }
    });
  }
}

// --- account ----------------------------------------------------------------------

async function refreshMe() {
  try {
    const me = await api.get("/api/me");
    const first = ctx.me === null;
    ctx.me = me;
    ctx.signedOut = false;
    const balance = $("#balance");
    balance.hidden = false;
    balance.classList.toggle("local", !me.shared);
    $("#account-button").hidden = !me.shared;
    if (!me.shared) {
      balance.textContent = "Local studio";
      balance.title = "This studio runs on this machine: no key, no credit limit";
    } else {
      balance.textContent = me.unlimited ? `${me.name} · unlimited` : `${me.name} · ${me.credits} credit${me.credits === 1 ? "" : "s"}`;
      balance.classList.toggle("low", !me.unlimited && me.credits <= 0);
      balance.title = "Your credit balance";
    }
    if (first) {
      await loadCatalog();
      jobs.resume();
    }
    form.changed();
    return me;
  } catch (err) {
    if (err.status === 401) requireKey(err.message);
    else toast(`Cannot reach the server: ${sentence(err.message)}`, { error: true });
    return null;
  }
}

function requireKey(message) {
  ctx.me = null;
  ctx.signedOut = true;
  form.refreshButton();
  const dialog = $("#key-dialog");
  $("#err-key").textContent = api.auth.key && message ? sentence(message) : "";
  $("#key-signout").hidden = !api.auth.key;
  $("#account-button").hidden = false;
  if (!dialog.open) dialog.showModal();
}

function initAccount() {
  ctx.refreshMe = refreshMe;
  ctx.requireKey = requireKey;
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) { $("#err-key").textContent = "Enter your API key."; return; }
    api.auth.key = key;
    $("#err-key").textContent = "";
    try {
      await api.get("/api/me");
    } catch (err) {
      $("#err-key").textContent = err.status === 401 ? "That key was not accepted. Check it and try again." : sentence(err.message);
      return;
    }
    $("#key-dialog").close();
    $("#api-key").value = "";
    await refreshMe();
    ctx.historyChanged();
  });
  $("#key-signout").addEventListener("click", () => {
    api.auth.key = "";
    location.reload();
  });
  $("#account-button").addEventListener("click", () => requireKey(""));
}

// --- catalog ------------------------------------------------------------------------

async function loadCatalog() {
  const [models, styles, samplers] = await Promise.all([
    api.get("/api/models"), api.get("/api/styles").catch(() => []), api.get("/api/samplers").catch(() => []),
  ]);
  ctx.models = models;
  ctx.styles = styles;
  ctx.samplers = samplers;
  form.renderCatalog();
  history.renderFilters();
  prompts.load();
}

async function loadCapabilities() {
  // Actions the server may not have yet (upscale) show only when its request schema offers them.
  try {
    const schema = await (await fetch("/openapi.json")).json();
    const schemas = (schema.components && schema.components.schemas) || {};
    const modes = (schemas.Mode && schemas.Mode.enum) || [];
    ctx.caps.upscale = modes.includes("upscale");
    ctx.caps.analyse = Object.keys(schema.paths || {}).find((p) => /^\/api\/.*analy[sz]e/.test(p) && schema.paths[p].post && !p.includes("{")) || null;
  } catch { ctx.caps.upscale = false; }
}

// --- keyboard -------------------------------------------------------------------------

function initKeyboard() {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const dialog = $("dialog[open]");
    event.preventDefault();
    if (dialog) {
      const f = dialog.querySelector("form");
      if (f && f.id !== "confirm") f.requestSubmit();
      return;
    }
    showView("create");
    ctx.generate();
  });
}

async function start() {
  ctx.showView = showView;
  ctx.submitJob = jobs.submitJob;
  initTabs();
  initAccount();
  form.init();
  actions.init();
  mask.init();
  history.init();
  prompts.init();
  initKeyboard();
  if (location.hash === "#history") showView("history");
  await loadCapabilities();
  await refreshMe();
  document.body.dataset.ready = "true";
}

start();
