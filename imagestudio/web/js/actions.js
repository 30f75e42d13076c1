// What you can do with an image: download, favourite, use as reference, vary,
// repaint, extend, upscale (when the server has it), reuse settings, delete.

import * as api from "./api.js";
import { fill } from "./form.js";
import { setReferenceImage } from "./reference.js";
import { openExtend, openRepaint } from "./mask.js";
import { $, ctx, el, icon, sentence, toast } from "./state.js";

const ACTIONS = [
  { id: "download", icon: "download", label: "Download", run: download },
  { id: "favourite", icon: "star", label: "Favourite", run: toggleFavourite, toggle: true },
  { id: "reference", icon: "reference", label: "Use as reference", run: useAsReference },
  { id: "vary", icon: "vary", label: "Vary", run: vary },
  { id: "repaint", icon: "brush", label: "Repaint", run: (image) => openRepaint(image) },
  { id: "extend", icon: "extend", label: "Extend", run: (image) => openExtend(image) },
  { id: "upscale", icon: "upscale", label: "Upscale", run: upscale, when: () => !!ctx.caps.upscale },
  { id: "reuse", icon: "reuse", label: "Reuse settings", run: reuseSettings },
];

/** A toolbar for one image; `wide` shows labels (viewer), compact shows icons. */
export function imageActions(image, { compact = false, withDelete = false, only = null } = {}) {
  const bar = el("div", { class: compact ? "actions" : "actions wide", role: "toolbar", "aria-label": "Image actions" });
  for (const action of ACTIONS) {
    if (action.when && !action.when()) continue;
    if (only && !only.includes(action.id)) continue;
    const button = el("button", { type: "button", title: action.label, "aria-label": action.label, dataset: { action: action.id } }, icon(action.icon));
    if (!compact) button.append(el("span", { text: action.label }));
    if (action.toggle) button.setAttribute("aria-pressed", String(!!image.favourite));
    button.addEventListener("click", () => action.run(image, button));
    bar.append(button);
  }
  if (withDelete) {
    const button = el("button", { type: "button", class: "delete", title: "Delete", "aria-label": "Delete", dataset: { action: "delete" } }, icon("trash"), el("span", { text: "Delete" }));
    button.addEventListener("click", () => deleteImage(image));
    bar.append(button);
  }
  return bar;
}

function fail(err) {
  if (err.status === 401) ctx.requireKey(err.message);
  else toast(sentence(err.message), { error: true });
}

async function download(image) {
  try {
    await api.download(image.url, `imagestudio-${image.seed}-${image.id.slice(0, 8)}.png`);
  } catch (err) { fail(err); }
}

async function toggleFavourite(image) {
  const value = !image.favourite;
  try {
    await api.post(`/api/images/${image.id}/favourite`, { favourite: value });
    image.favourite = value;
    for (const button of document.querySelectorAll(`[data-image-id="${image.id}"] [data-action=favourite], #viewer[data-image-id="${image.id}"] [data-action=favourite]`)) {
      button.setAttribute("aria-pressed", String(value));
    }
    toast(value ? "Added to favourites." : "Removed from favourites.");
    ctx.historyChanged && ctx.historyChanged();
  } catch (err) { fail(err); }
}

function toCreate() {
  closeViewer();
  ctx.showView("create");
}

function useAsReference(image) {
  toCreate();
  setReferenceImage(image);
  if (!$("#prompt").value.trim() && image.prompt) $("#prompt").value = image.prompt;
  $("#reference").scrollIntoView({ block: "nearest", behavior: "smooth" });
  $("#prompt").focus();
  toast("Image set as reference: describe the change and generate.");
}

async function reuseSettings(image) {
  try {
    const settings = await api.get(`/api/images/${image.id}/settings`);
    toCreate();
    fill(settings);
    window.scrollTo({ top: 0, behavior: "smooth" });
    $("#prompt").focus();
    toast(`Settings restored (seed ${settings.seed}).`);
  } catch (err) { fail(err); }
}

function formCount() {
  return Number(document.querySelector("input[name=count]:checked").value);
}

/** Stored settings without references to one-off uploads ("upload:init_image"),
 * which the server cannot resolve again. */
function resubmittable(settings) {
  const out = {};
  for (const [key, value] of Object.entries(settings)) {
    out[key] = typeof value === "string" && value.startsWith("upload:") ? null : value;
  }
  return out;
}

async function vary(image) {
  try {
    const settings = resubmittable(await api.get(`/api/images/${image.id}/settings`));
    let request;
    if (settings.mode === "txt2img") {
      // Same seed, a little of a second noise: a close relative of this image.
      request = { ...settings, mode: "variation", init_image: null, mask: null, variation_seed: -1, variation_strength: 0.3, count: formCount() };
    } else {
      request = {
        mode: "variation", prompt: image.prompt, negative_prompt: image.negative_prompt || "", model: image.model,
        style: image.style, init_image: `image:${image.id}`, strength: 0.45, count: formCount(), seed: -1,
      };
    }
    toCreate();
    await ctx.submitJob(request, { label: `Variations · ${image.prompt}` });
  } catch (err) { fail(err); }
}

async function upscale(image) {
  try {
    toCreate();
    await ctx.submitJob({ mode: "upscale", init_image: `image:${image.id}`, prompt: image.prompt || "", model: image.model, upscale_factor: 2 },
      { label: `Upscale ×2 · ${image.prompt}` });
  } catch (err) { fail(err); }
}

async function deleteImage(image) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `“${(image.prompt || "").slice(0, 80)}” — the file and its settings are removed for good.`;
  dialog.returnValue = "";
  dialog.showModal();
  const answer = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (answer !== "ok") return;
  try {
    await api.del(`/api/images/${image.id}`);
    closeViewer();
    for (const node of document.querySelectorAll(`.tile[data-image-id="${image.id}"]`)) {
      const batch = node.closest(".batch");
      node.remove();
      if (batch && !batch.querySelector(".tile")) batch.remove();
    }
    toast("Image deleted.");
    ctx.historyChanged && ctx.historyChanged();
  } catch (err) { fail(err); }
}

// --- viewer -------------------------------------------------------------------

function closeViewer() {
  const viewer = $("#viewer");
  if (viewer.open) viewer.close();
}

const SETTING_LABELS = [
  ["mode", "Mode"], ["model", "Model"], ["style", "Style"], ["width", "Width"], ["height", "Height"],
  ["seed", "Seed"], ["steps", "Steps"], ["guidance", "Guidance"], ["sampler", "Sampler"],
  ["strength", "Change (strength)"], ["variation_seed", "Variation seed"], ["variation_strength", "Variation strength"],
  ["color_correction", "Reference's colours kept"], ["enhance", "Enhanced"], ["negative_prompt", "Negative prompt"],
];

let viewerTile = null; // the tile the viewer shows, for previous/next

function neighbour(step) {
  if (!viewerTile || !viewerTile.isConnected) return null;
  const tiles = [...document.querySelectorAll(viewerTile.closest("#history-grid") ? "#history-grid .tile" : "#results-grid .tile")];
  return tiles[tiles.indexOf(viewerTile) + step] || null;
}

function showNeighbour(step) {
  const next = neighbour(step);
  if (next) openViewer(next.image, next);
}

export async function openViewer(image, tile = null) {
  viewerTile = tile;
  $("#viewer-prev").disabled = !neighbour(-1);
  $("#viewer-next").disabled = !neighbour(1);
  const viewer = $("#viewer");
  viewer.dataset.imageId = image.id;
  const img = $("#viewer-image");
  img.removeAttribute("src");
  img.alt = image.prompt || "Image";
  api.showImage(img, image.url);
  $("#viewer-prompt").textContent = image.prompt || "(no prompt)";
  $("#viewer-actions").replaceWith(Object.assign(imageActions(image, { withDelete: true }), { id: "viewer-actions" }));
  $("#err-viewer").textContent = "";
  const list = $("#viewer-settings");
  list.replaceChildren();
  if (!viewer.open) viewer.showModal();
  try {
    const settings = await api.get(`/api/images/${image.id}/settings`);
    for (const [key, label] of SETTING_LABELS) {
      const value = settings[key];
      if (value === null || value === undefined || value === "" || (key === "variation_strength" && !value)) continue;
      if (key === "color_correction" && !value) continue; // only worth a line where it was used
      if (key === "strength" && settings.mode === "txt2img") continue;
      list.append(el("dt", { text: label }), el("dd", { text: typeof value === "boolean" ? (value ? "yes" : "no") : String(value), dataset: { setting: key } }));
    }
    if (settings.outpaint && Object.values(settings.outpaint).some(Boolean)) {
      const o = settings.outpaint;
      list.append(el("dt", { text: "Extended" }), el("dd", { text: `left ${o.left}, right ${o.right}, top ${o.top}, bottom ${o.bottom}` }));
    }
    list.append(el("dt", { text: "Created" }), el("dd", { text: new Date(image.created_at * 1000).toLocaleString() }));
  } catch (err) {
    $("#err-viewer").textContent = sentence(err.message);
  }
}

export function init() {
  ctx.openViewer = openViewer;
  $("#viewer-prev").addEventListener("click", () => showNeighbour(-1));
  $("#viewer-next").addEventListener("click", () => showNeighbour(1));
  $("#viewer").addEventListener("keydown", (event) => {
    if (event.target.matches("input, textarea, select")) return;
    if (event.key === "ArrowLeft") showNeighbour(-1);
    else if (event.key === "ArrowRight") showNeighbour(1);
  });
}
