// Saved prompts: keep a prompt with its style and settings, load it back later.

import * as api from "./api.js";
import { buildRequest, fill } from "./form.js";
import { $, ctx, el, sentence, toast } from "./state.js";

const KEEP = ["model", "aspect_ratio", "width", "height", "count", "steps", "guidance", "sampler", "enhance"];
let saved = [];
let loadedId = null;

function note(text, { deletable = false } = {}) {
  $("#saved-note").textContent = text;
  $("#delete-saved").hidden = !deletable;
}

export async function load() {
  try {
    saved = await api.get("/api/prompts");
  } catch (err) {
    if (err.status !== 401) note(`Saved prompts are unavailable: ${sentence(err.message)}`);
    return;
  }
  const select = $("#saved-prompts");
  select.replaceChildren(
    el("option", { value: "", text: saved.length ? `Saved prompts (${saved.length})` : "No saved prompts yet" }),
    ...saved.map((p) => el("option", { value: p.id, text: p.name })));
  select.disabled = !saved.length;
}

async function save() {
  const request = buildRequest();
  const prompt = request.prompt.trim();
  if (!prompt) {
    note("Write a prompt first, then save it.");
    return;
  }
  const settings = {};
  for (const key of KEEP) if (request[key] !== undefined && request[key] !== null) settings[key] = request[key];
  const name = prompt.length > 60 ? `${prompt.slice(0, 57)}…` : prompt;
  try {
    const item = await api.post("/api/prompts", {
      name, prompt, negative_prompt: request.negative_prompt, style: request.style, settings,
    });
    await load();
    loadedId = item.id;
    note(`Saved as “${item.name}”.`, { deletable: true });
  } catch (err) {
    if (err.status === 401) ctx.requireKey(err.message);
    else note(sentence(err.message));
  }
}

function choose() {
  const select = $("#saved-prompts");
  const item = saved.find((p) => p.id === select.value);
  select.value = "";
  if (!item) return;
  fill({ ...item.settings, prompt: item.prompt, negative_prompt: item.negative_prompt, style: item.style }, { keepReference: true });
  loadedId = item.id;
  note(`Loaded “${item.name}”.`, { deletable: true });
  $("#prompt").focus();
}

async function remove() {
  if (!loadedId) return;
  try {
    await api.del(`/api/prompts/${loadedId}`);
    loadedId = null;
    note("Saved prompt deleted.");
    await load();
  } catch (err) {
    toast(sentence(err.message), { error: true });
  }
}

export function init() {
  ctx.loadSavedPrompts = load;
  $("#save-prompt").addEventListener("click", save);
  $("#saved-prompts").addEventListener("change", choose);
  $("#delete-saved").addEventListener("click", remove);
}
