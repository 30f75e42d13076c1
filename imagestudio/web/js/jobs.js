// Jobs while they run (progress, ETA, live preview, queue place, cancel) and
// their results, side by side.

import * as api from "./api.js";
import { imageActions } from "./actions.js";
import { noteSeed } from "./form.js";
import { $, ctx, el, icon, sentence } from "./state.js";

const cards = new Map(); // job id -> card element

export async function submitJob(request, { label } = {}) {
  const job = await api.post("/api/jobs", request);
  const card = jobCard(job, label);
  $("#jobs").prepend(card);
  if (window.matchMedia("(max-width: 900px)").matches) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  follow(job, card);
  ctx.refreshMe();
  return job;
}

/** After a reload: show and follow the jobs still queued or running. */
export async function resume() {
  try {
    const open = await api.get("/api/jobs?state=queued,running");
    for (const job of open.reverse()) {
      if (cards.has(job.id)) continue;
      const card = jobCard(job);
      $("#jobs").prepend(card);
      follow(job, card);
    }
  } catch { /* an older server without the job list: nothing to resume */ }
}

function describe(request) {
  const mode = { txt2img: "", img2img: "Image to image · ", inpaint: "Repaint · ", outpaint: "Extend · ", variation: "Variations · ", upscale: "Upscale · " }[request.mode] || "";
  return `${mode}${request.prompt || "(prompt of the image)"}`;
}

function jobCard(job, label) {
  const preview = el("div", { class: "preview" }, el("div", { class: "spinner", "aria-hidden": "true" }));
  const status = el("div", { class: "status", text: "Queued" });
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": "Progress" }, el("span"));
  const cancel = el("button", { type: "button", class: "ghost cancel", text: "Cancel", "aria-label": "Cancel this job" });
  const card = el("article", { class: "card job", dataset: { jobId: job.id, state: job.state } },
    preview,
    el("div", { class: "body" }, el("div", { class: "title", text: label || describe(job.request), title: job.request.prompt || "" }), status, bar),
    cancel);
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    status.textContent = "Cancelling…";
    try {
      const view = await api.post(`/api/jobs/${job.id}/cancel`);
      if (view.state === "cancelled") finish(view, card);
    } catch (err) {
      status.textContent = sentence(err.message);
      cancel.disabled = false;
    }
  });
  cards.set(job.id, card);
  update(card, { state: job.state, position: job.position, step: 0, total: job.total });
  return card;
}

function formatEta(seconds) {
  if (seconds == null) return "";
  if (seconds < 1) return "under a second left";
  if (seconds < 90) return `about ${Math.round(seconds)} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

function update(card, info) {
  if (card.dataset.state === "done") return;
  const status = card.querySelector(".status");
  const bar = card.querySelector(".bar");
  if (info.state) card.dataset.state = info.state;
  if (info.state === "queued") {
    status.textContent = info.position > 1 ? `Queued · #${info.position} in line` : "Queued · next in line";
  } else if (info.state === "running") {
    const pct = info.total ? Math.round((100 * info.step) / info.total) : 0;
    bar.firstChild.style.width = `${pct}%`;
    bar.setAttribute("aria-valuenow", String(pct));
    const eta = formatEta(info.eta_seconds);
    status.textContent = info.step ? `Step ${info.step} of ${info.total}${eta ? ` · ${eta}` : ""}` : "Starting…";
  }
  if (info.preview_url) {
    const preview = card.querySelector(".preview");
    let img = preview.querySelector("img");
    if (!img) {
      img = el("img", { alt: "Live preview" });
      preview.replaceChildren(img);
    }
    api.showImage(img, info.preview_url);
  }
}

async function follow(job, card) {
  let ended = false;
  try {
    await api.events(`/api/jobs/${job.id}/events`, (name, data) => {
      if (name === "queued") update(card, { state: "queued", position: data.position });
      else if (name === "started") update(card, { state: "running", step: 0, total: data.total });
      else if (name === "progress") update(card, { state: "running", ...data });
      else if (name === "done") { ended = true; finish(data, card); }
    });
  } catch { /* the stream broke: poll instead */ }
  while (!ended) {
    try {
      const view = await api.get(`/api/jobs/${job.id}`);
      if (["succeeded", "failed", "cancelled"].includes(view.state)) { finish(view, card); return; }
      update(card, view);
    } catch (err) {
      if (err.status === 404) return;
    }
    await new Promise((r) => setTimeout(r, 700));
  }
}

function finish(view, card) {
  if (card.dataset.state === "done" || card.dataset.finished) return;
  card.dataset.finished = "1";
  card.dataset.state = view.state;
  const status = card.querySelector(".status");
  const cancel = card.querySelector(".cancel");
  ctx.refreshMe();
  if (view.state === "succeeded") {
    cards.delete(view.id);
    card.remove();
    addResults(view);
    if (view.images.length) noteSeed(view.images[0].seed);
    ctx.historyChanged && ctx.historyChanged();
    return;
  }
  card.querySelector(".bar").hidden = true;
  const refunded = view.refunded && view.cost ? ` Your ${view.cost} credit${view.cost === 1 ? " was" : "s were"} refunded.` : "";
  status.textContent = view.state === "cancelled" ? `Cancelled.${refunded}` : `Failed: ${sentence(view.error || "unknown error")}${refunded}`;
  status.setAttribute("role", view.state === "failed" ? "alert" : "status");
  cancel.replaceWith(el("button", {
    type: "button", class: "icon-button", "aria-label": "Dismiss", title: "Dismiss",
    onclick: () => { cards.delete(view.id); card.remove(); },
  }, icon("x")));
}

/** Show a finished job's images as one batch at the top of the results. */
export function addResults(view) {
  $("#results-empty").hidden = true;
  const r = view.request;
  const seeds = view.images.map((i) => i.seed);
  const seedText = seeds.length > 1 ? `seeds ${seeds[0]}–${seeds[seeds.length - 1]}` : `seed ${seeds[0]}`;
  const head = el("div", { class: "batch-head" },
    el("span", { class: "prompt", text: describe(r), title: r.prompt }),
    el("span", { text: `${r.model} · ${r.width}×${r.height} · ${seedText}` }));
  const images = el("div", { class: "batch-images" }, view.images.map((image) => tile(image)));
  images.style.setProperty("--n", String(Math.max(1, Math.min(4, view.images.length))));
  $("#results-grid").prepend(el("section", { class: "batch", dataset: { jobId: view.id }, "aria-label": `Result: ${r.prompt}` }, head, images));
}

export function tile(image, { caption = false } = {}) {
  const img = el("img", { alt: image.prompt ? `Generated: ${image.prompt}` : "Generated image", loading: "lazy" });
  api.showImage(img, image.url);
  const open = el("button", { type: "button", class: "open", "aria-label": "Open large", title: "Open large" }, img);
  open.style.setProperty("--ar", `${image.width} / ${image.height}`);
  const node = el("figure", { class: "tile", dataset: { imageId: image.id, seed: String(image.seed) } }, open);
  node.image = image;
  open.addEventListener("click", () => ctx.openViewer(image, node));
  node.style.margin = "0";
  if (caption) node.append(el("figcaption", { class: "caption", text: image.prompt || "(no prompt)" }));
  // Tiles keep the everyday actions; the large view has them all (upscale, delete).
  const only = caption ? ["download", "favourite", "reference", "repaint", "extend", "reuse"]
    : ["download", "favourite", "reference", "vary", "repaint", "extend", "reuse"];
  node.append(imageActions(image, { compact: true, only }));
  return node;
}
