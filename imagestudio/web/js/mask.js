// The mask editor (repaint part of an image) and the extend (outpaint) dialog.

import * as api from "./api.js";
import { blobToDataUri, encodeGreyPng } from "./png.js";
import { $, $$, ctx, sentence } from "./state.js";

const BRUSH = "#ff3d71";
let current = null; // the image being edited
let painting = null; // {x, y} of the last point while a stroke is drawn

function canvas() { return $("#mask-canvas"); }

function toCanvas(event) {
  const c = canvas();
  const rect = c.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * c.width) / rect.width,
    y: ((event.clientY - rect.top) * c.height) / rect.height,
    scale: c.width / rect.width,
  };
}

function brushWidth(scale) {
  return Number($("#brush-size").value) * scale;
}

function stroke(from, to) {
  const c = canvas();
  const g = c.getContext("2d");
  g.save();
  g.globalCompositeOperation = $("input[name=tool]:checked").value === "eraser" ? "destination-out" : "source-over";
  g.strokeStyle = BRUSH;
  g.fillStyle = BRUSH;
  g.lineCap = "round";
  g.lineJoin = "round";
  g.lineWidth = brushWidth(to.scale);
  g.beginPath();
  g.moveTo(from.x, from.y);
  g.lineTo(to.x + 0.01, to.y);
  g.stroke();
  g.restore();
}

function clearMask() {
  const c = canvas();
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function invertMask() {
  const c = canvas();
  const copy = document.createElement("canvas");
  copy.width = c.width;
  copy.height = c.height;
  copy.getContext("2d").drawImage(c, 0, 0);
  const g = c.getContext("2d");
  g.save();
  g.globalCompositeOperation = "source-over";
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = BRUSH;
  g.fillRect(0, 0, c.width, c.height);
  g.globalCompositeOperation = "destination-out";
  g.drawImage(copy, 0, 0);
  g.restore();
}

/** The mask as a greyscale PNG data URI: white where painted, black elsewhere; null if empty. */
export async function maskDataUri() {
  const c = canvas();
  const src = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const grey = new Uint8Array(c.width * c.height);
  let painted = 0;
  for (let i = 0; i < grey.length; i++) {
    if (src[i * 4 + 3] >= 128) { grey[i] = 255; painted++; }
  }
  if (!painted) return null;
  return blobToDataUri(await encodeGreyPng(c.width, c.height, grey));
}

function modelFor(image) {
  return ctx.models.some((m) => m.name === image.model) ? image.model : ($("#model").value || null);
}

function formSettings() {
  const request = {};
  const steps = $("#steps").value.trim();
  const guidance = $("#guidance").value.trim();
  if (steps) request.steps = Number(steps);
  if (guidance) request.guidance = Number(guidance);
  if ($("#sampler").value) request.sampler = $("#sampler").value;
  request.count = Number($("input[name=count]:checked").value);
  return request;
}

function showDialogError(slotId, err) {
  const details = err.details && err.details.length ? err.details : [{ message: err.message }];
  $(slotId).textContent = details.map((d) => sentence(d.message)).join(" ");
}

async function submitFrom(dialog, slotId, button, request, label) {
  $(slotId).textContent = "";
  button.disabled = true;
  try {
    await ctx.submitJob(request, { label });
    dialog.close();
    ctx.showView("create");
  } catch (err) {
    if (err.status === 401) ctx.requireKey(err.message);
    else showDialogError(slotId, err);
  } finally {
    button.disabled = false;
  }
}

// --- repaint ---------------------------------------------------------------------

export function openRepaint(image) {
  current = image;
  const dialog = $("#repaint");
  const img = $("#mask-image");
  const c = canvas();
  c.width = image.width;
  c.height = image.height;
  clearMask();
  img.removeAttribute("src");
  // The image fills a box without letterboxing, so the canvas over it maps 1:1.
  const box = Math.min(512, window.innerWidth - 72);
  const scale = Math.min(box / image.width, (window.innerHeight * 0.5) / image.height);
  img.style.width = `${Math.round(image.width * scale)}px`;
  img.style.height = `${Math.round(image.height * scale)}px`;
  img.classList.toggle("small", scale > 2);
  api.showImage(img, image.url);
  $("#repaint-prompt").value = image.prompt || $("#prompt").value;
  $("#err-repaint").textContent = "";
  if ($("#viewer").open) $("#viewer").close();
  dialog.showModal();
  $("#brush-size").focus();
}

async function submitRepaint(event) {
  event.preventDefault();
  const mask = await maskDataUri();
  if (!mask) {
    $("#err-repaint").textContent = "Paint over the area to change first.";
    return;
  }
  const prompt = $("#repaint-prompt").value.trim();
  if (!prompt) {
    $("#err-repaint").textContent = "Describe what should appear in the painted area.";
    return;
  }
  const request = {
    ...formSettings(), mode: "inpaint", prompt, negative_prompt: $("#negative").value, model: modelFor(current),
    // null: the server's inpaint strength, which is tuned for asking something new of the area
    init_image: `image:${current.id}`, mask, strength: null, seed: -1,
  };
  submitFrom($("#repaint"), "#err-repaint", $("#repaint-submit"), request, `Repaint · ${prompt}`);
}

// --- extend ------------------------------------------------------------------------

function extendAmounts() {
  const amount = Number($("#extend-amount").value);
  const out = { left: 0, right: 0, top: 0, bottom: 0 };
  for (const box of $$("input[name=side]:checked")) out[box.value] = amount;
  return out;
}

function drawExtendPreview() {
  if (!current) return;
  const o = extendAmounts();
  const scale = 120 / Math.max(current.width + o.left + o.right, current.height + o.top + o.bottom);
  const pad = (v) => `${Math.round(v * scale) + 6}px`;
  $("#extend-preview").style.padding = `${pad(o.top)} ${pad(o.right)} ${pad(o.bottom)} ${pad(o.left)}`;
  $("#extend-amount-value").textContent = $("#extend-amount").value;
}

export function openExtend(image) {
  current = image;
  api.showImage($("#extend-image"), image.url);
  $("#extend-prompt").value = image.prompt || $("#prompt").value;
  $("#err-extend").textContent = "";
  drawExtendPreview();
  if ($("#viewer").open) $("#viewer").close();
  $("#extend").showModal();
}

function submitExtend(event) {
  event.preventDefault();
  const outpaint = extendAmounts();
  if (!Object.values(outpaint).some(Boolean)) {
    $("#err-extend").textContent = "Choose at least one direction.";
    return;
  }
  const prompt = $("#extend-prompt").value.trim();
  const request = {
    ...formSettings(), mode: "outpaint", prompt, negative_prompt: $("#negative").value, model: modelFor(current),
    init_image: `image:${current.id}`, outpaint, seed: -1,
  };
  submitFrom($("#extend"), "#err-extend", $("#extend-submit"), request, `Extend · ${prompt || current.prompt}`);
}

export function init() {
  const c = canvas();
  c.addEventListener("pointerdown", (event) => {
    c.setPointerCapture(event.pointerId);
    painting = toCanvas(event);
    stroke(painting, painting);
  });
  c.addEventListener("pointermove", (event) => {
    if (!painting) return;
    const point = toCanvas(event);
    stroke(painting, point);
    painting = point;
  });
  const end = () => { painting = null; };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("#brush-size").addEventListener("input", () => { $("#brush-size-value").textContent = $("#brush-size").value; });
  $("#mask-clear").addEventListener("click", clearMask);
  $("#mask-invert").addEventListener("click", invertMask);
  $("#repaint-form").addEventListener("submit", submitRepaint);
  // Keys while painting: [ and ] change the brush, B brush, E eraser, I invert.
  $("#repaint").addEventListener("keydown", (event) => {
    if (event.target.matches("textarea, input[type=text]") || event.ctrlKey || event.metaKey || event.altKey) return;
    const size = $("#brush-size");
    const key = event.key.toLowerCase();
    if (key === "[" || key === "]") {
      size.value = String(Number(size.value) + (key === "]" ? 8 : -8));
      size.dispatchEvent(new Event("input"));
    } else if (key === "b" || key === "e") {
      $(`input[name=tool][value=${key === "b" ? "brush" : "eraser"}]`).checked = true;
    } else if (key === "i") invertMask();
    else return;
    event.preventDefault();
  });
  $("#extend-form").addEventListener("submit", submitExtend);
  $("#extend-form").addEventListener("input", drawExtendPreview);
  for (const button of $$("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}
