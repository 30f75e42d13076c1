// History: every image, newest first, paged, searchable and filterable.

import * as api from "./api.js";
import { tile } from "./jobs.js";
import { $, ctx, debounce, el, sentence } from "./state.js";

const PAGE = 24;
const state = { offset: 0, seq: 0, loaded: false };

function filters() {
  return {
    q: $("#history-search").value.trim(),
    model: $("#history-model").value,
    style: $("#history-style").value,
    favourite: $("#history-favourites").checked ? "true" : "",
  };
}

export async function load({ more = false } = {}) {
  const seq = ++state.seq;
  const offset = more ? state.offset : 0;
  $("#err-history").textContent = "";
  try {
    const page = await api.get(`/api/images${api.query({ ...filters(), limit: PAGE, offset })}`);
    if (seq !== state.seq) return;
    const grid = $("#history-grid");
    if (!more) grid.replaceChildren();
    for (const image of page.items) grid.append(tile(image, { caption: true }));
    state.offset = page.next_offset ?? offset + page.items.length;
    $("#history-more").hidden = page.next_offset == null;
    const f = filters();
    const filtered = f.q || f.model || f.style || f.favourite;
    $("#history-total").textContent = `${page.total} image${page.total === 1 ? "" : "s"}${filtered ? " found" : ""}`;
    if (!page.total && !more) {
      grid.append(el("div", { class: "empty", style: "grid-column: 1 / -1" },
        el("p", { text: filtered ? "No image matches. Try other words or clear the filters." : "No images yet: generate some in Create." })));
    }
    state.loaded = true;
  } catch (err) {
    if (seq !== state.seq) return;
    if (err.status === 401) ctx.requireKey(err.message);
    else $("#err-history").textContent = `Could not load the history: ${sentence(err.message)}`;
  }
}

export function renderFilters() {
  const model = $("#history-model");
  model.replaceChildren(el("option", { value: "", text: "All models" }), ...ctx.models.map((m) => el("option", { value: m.name, text: m.name })));
  const style = $("#history-style");
  style.replaceChildren(el("option", { value: "", text: "All styles" }),
    ...ctx.styles.filter((s) => s.name !== "None" && s.name !== "Auto").map((s) => el("option", { value: s.name, text: s.name })));
}

export function init() {
  const reload = debounce(() => load(), 250);
  $("#history-search").addEventListener("input", reload);
  for (const id of ["#history-model", "#history-style", "#history-favourites"]) $(id).addEventListener("change", () => load());
  $("#history-more").addEventListener("click", () => load({ more: true }));
  // Reload when visible; mark stale otherwise.
  ctx.historyChanged = () => {
    if (!$("#view-history").hidden) load();
    else state.loaded = false;
  };
  ctx.historyShown = () => { if (!state.loaded) load(); };
}
