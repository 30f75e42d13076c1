// The generate form: catalog controls, prompt counter, seed, live cost
// estimate and the reasons Generate is disabled. The reference image lives in reference.js.

import * as api from "./api.js";
import { clearReference, initReference, reference, setReferenceImage, setStrength } from "./reference.js";
import { $, $$, ASPECT_RATIOS, ctx, debounce, el, sentence, sizeForRatio, slug } from "./state.js";

const MAX_PROMPT = 2000;

const state = {
  estimate: null, // {cost, balance, affordable} or {error}
  estimateSeq: 0,
  submitting: false,
};

// --- errors next to the control that caused them ------------------------------

const FIELD_ERRORS = {
  prompt: "err-prompt", negative_prompt: "err-negative", width: "err-size", height: "err-size",
  aspect_ratio: "err-size", count: "err-count", steps: "err-steps", guidance: "err-guidance",
  sampler: "err-sampler", seed: "err-seed", style: "err-style", model: "err-model",
  strength: "err-reference", init_image: "err-reference", mask: "err-reference",
};
const FIELD_INPUTS = {
  "err-prompt": ["#prompt"], "err-negative": ["#negative"], "err-size": ["#width", "#height"],
  "err-steps": ["#steps"], "err-guidance": ["#guidance"], "err-sampler": ["#sampler"], "err-seed": ["#seed"],
  "err-model": ["#model"],
};

/** Which error slot a server error belongs to (field name, else words in the message). */
export function errorSlot(field, message) {
  const root = String(field || "").split(".")[0];
  if (FIELD_ERRORS[root]) return FIELD_ERRORS[root];
  const m = String(message || "").toLowerCase();
  if (/credit/.test(m)) return "err-request";
  if (/negative/.test(m)) return "err-negative";
  if (/prompt/.test(m)) return "err-prompt";
  if (/\b(width|height|size|aspect|pixels per side)\b/.test(m)) return "err-size";
  if (/sampler/.test(m)) return "err-sampler";
  if (/style/.test(m)) return "err-style";
  if (/\bmodel\b/.test(m)) return "err-model";
  if (/init image|init_image|reference|upload|not an image|could not be read/.test(m)) return "err-reference";
  return "err-request";
}

export function clearErrors() {
  for (const node of $$("#view-create .field-error")) node.textContent = "";
  for (const node of $$("#view-create .invalid")) {
    node.classList.remove("invalid");
    node.removeAttribute("aria-invalid");
  }
}

/** Show an ApiError next to its controls; returns the first slot used. */
export function showError(err) {
  const items = err.details && err.details.length
    ? err.details.map((d) => ({ field: d.field, message: d.message }))
    : [{ field: null, message: err.message }];
  let first = null;
  for (const { field, message } of items) {
    const slot = errorSlot(field, message);
    first = first || slot;
    const node = document.getElementById(slot);
    const text = sentence(message);
    node.textContent = node.textContent ? `${node.textContent} ${text}` : text;
    for (const selector of FIELD_INPUTS[slot] || []) {
      const input = $(selector);
      input.classList.add("invalid");
      input.setAttribute("aria-invalid", "true");
    }
    if (slot === "err-negative") $("#negative-box").open = true;
    if (node.closest("#settings")) expandSettings();
    if (["err-seed", "err-steps", "err-guidance", "err-sampler"].includes(slot)) $("#advanced").open = true;
  }
  return first;
}

export function expandSettings() {
  $("#settings").classList.remove("collapsed");
  $("#settings-toggle").setAttribute("aria-expanded", "true");
}

// --- catalog controls -----------------------------------------------------------

export function renderCatalog() {
  const model = $("#model");
  const previous = model.value;
  model.replaceChildren(...ctx.models.map((m) => el("option", { value: m.name, text: `${m.name} · ${m.cost} credit${m.cost === 1 ? "" : "s"}/image` })));
  if (!ctx.models.length) {
    model.append(el("option", { value: "", text: "No model installed" }));
    $("#err-model").textContent = "No model is installed. Put models in the models folder and restart the server.";
  }
  if (previous && ctx.models.some((m) => m.name === previous)) model.value = previous;

  const sampler = $("#sampler");
  sampler.replaceChildren(el("option", { value: "", text: "Model default" }), ...ctx.samplers.map((s) => el("option", { value: s, text: s })));

  const grid = $("#styles");
  const current = selectedStyle() || "None";
  grid.replaceChildren(...ctx.styles.map((style) => styleOption(style, style.name === current)));
  if (!$("input[name=style]:checked")) {
    const first = $("input[name=style]");
    if (first) first.checked = true;
  }
  updateStyleInfo();
  onModelChange();
}

const SWATCHES = ["#6d5dfc", "#e0527a", "#2bb3a6", "#e89b3c", "#4f8ff7", "#9b59d0", "#d4574a", "#3fa34d", "#c2417f", "#5c6bc0"];

function styleOption(style, checked) {
  const thumb = el("span", { class: "thumb" });
  const index = ctx.styles.indexOf(style);
  const initials = style.name.split(/\s+/).map((w) => w[0]).join("").slice(0, 2).toUpperCase();
  const swatch = el("span", { class: "swatch", text: initials, "aria-hidden": "true" });
  swatch.style.background = `linear-gradient(135deg, ${SWATCHES[index % SWATCHES.length]}, ${SWATCHES[(index + 3) % SWATCHES.length]})`;
  thumb.append(swatch);
  // Previews are files made by the embedded model; a style without one shows its swatch.
  const img = el("img", { alt: "", loading: "lazy", decoding: "async" });
  img.addEventListener("load", () => { swatch.remove(); });
  img.addEventListener("error", () => {
    if (img.dataset.tried !== "static") {
      img.dataset.tried = "static";
      img.src = `styles/${slug(style.name)}.png`;
    } else img.remove();
  });
  if (style.preview_url) api.showImage(img, style.preview_url);
  else { img.dataset.tried = "static"; img.src = `styles/${slug(style.name)}.png`; }
  thumb.append(img);
  return el("label", { class: "style", title: style.description || style.name },
    el("input", { type: "radio", name: "style", value: style.name, checked, "aria-label": style.name, "aria-describedby": "err-style" }),
    thumb,
    el("span", { class: "name", text: style.name, "aria-hidden": "true" }));
}

function currentModel() {
  return ctx.models.find((m) => m.name === $("#model").value) || null;
}

export function onModelChange() {
  const model = currentModel();
  $("#model-info").textContent = model
    ? `${model.description || model.architecture} · native ${model.native_size}px · ${model.cost} credit${model.cost === 1 ? "" : "s"} per image`
    : "";
  $("#steps").placeholder = model ? String(model.default_steps) : "";
  $("#guidance").placeholder = model ? String(model.default_guidance) : "";
  $("#sampler").options[0].textContent = model ? `Model default (${model.default_sampler})` : "Model default";
  updateSizeInfo();
}

function updateStyleInfo() {
  const style = ctx.styles.find((s) => s.name === selectedStyle());
  $("#style-info").textContent = style ? `${style.name}: ${style.description}` : "";
}

function selectedStyle() {
  const input = $("input[name=style]:checked");
  return input ? input.value : null;
}

export function selectedRatio() {
  return $("input[name=ratio]:checked").value;
}

export function selectRatio(value) {
  const input = $(`input[name=ratio][value="${value}"]`);
  if (input) input.checked = true;
  $("#custom-size").hidden = value !== "custom";
  updateSizeInfo();
}

function updateSizeInfo() {
  const model = currentModel();
  const ratio = selectedRatio();
  $("#custom-size").hidden = ratio !== "custom";
  let text = "";
  if (ratio === "custom") {
    text = model ? `Between ${model.min_side} and ${model.max_side} px, in steps of 8.` : "";
  } else if (model) {
    const [w, h] = sizeForRatio(ratio, model.native_size);
    text = `${w} × ${h} px`;
  }
  $("#size-info").textContent = text;
}

// --- reading the form ---------------------------------------------------------

function numberOrNull(selector) {
  const raw = $(selector).value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  return Number.isFinite(value) ? value : NaN;
}

/** The GenerationRequest the form describes. */
export function buildRequest() {
  const style = selectedStyle();
  const request = {
    mode: "txt2img",
    prompt: $("#prompt").value,
    negative_prompt: $("#negative").value,
    style: style && style !== "None" ? style : null,
    enhance: $("#enhance").checked,
    model: $("#model").value || null,
    count: Number($("input[name=count]:checked").value),
    seed: seedValue(),
  };
  const ratio = selectedRatio();
  if (ratio === "custom") {
    request.width = numberOrNull("#width");
    request.height = numberOrNull("#height");
  } else request.aspect_ratio = ratio;
  const steps = numberOrNull("#steps");
  const guidance = numberOrNull("#guidance");
  if (steps !== null) request.steps = steps;
  if (guidance !== null) request.guidance = guidance;
  if ($("#sampler").value) request.sampler = $("#sampler").value;
  const ref = reference();
  if (ref) {
    request.mode = "img2img";
    request.init_image = ref.kind === "image" ? `image:${ref.id}` : ref.dataUri;
    request.strength = Number($("#strength").value);
    if ($("#color-correction").checked) request.color_correction = true;
  }
  return request;
}

/** Problems the page can see without asking the server. */
function localProblems(request) {
  const problems = [];
  const check = (ok, slot, message) => { if (!ok) problems.push({ slot, message }); };
  if (request.width !== undefined) {
    for (const side of ["width", "height"]) {
      const v = request[side];
      check(v !== null && Number.isInteger(v), "err-size", `Enter a whole number for the ${side}.`);
      if (Number.isInteger(v)) check(v % 8 === 0, "err-size", `The ${side} must be a multiple of 8 (${v} is not).`);
    }
  }
  if (request.steps !== undefined) check(Number.isInteger(request.steps) && request.steps >= 1 && request.steps <= 150, "err-steps", "Steps must be a whole number from 1 to 150.");
  if (request.guidance !== undefined) check(request.guidance >= 0 && request.guidance <= 30, "err-guidance", "Guidance must be between 0 and 30.");
  check(Number.isInteger(request.seed) && request.seed >= -1 && request.seed <= 4294967295, "err-seed", "The seed must be a whole number from 0 to 4294967295, or -1 for random.");
  return problems;
}

// --- seed ------------------------------------------------------------------------

function seedValue() {
  const raw = $("#seed").value.trim();
  if (!isLocked()) return -1;
  if (raw === "") return -1;
  return Number(raw);
}

function isLocked() {
  return $("#seed-lock").getAttribute("aria-pressed") === "true";
}

export function setSeed(seed, locked) {
  $("#seed").value = String(seed);
  setLocked(locked);
}

function setLocked(locked) {
  const button = $("#seed-lock");
  button.setAttribute("aria-pressed", String(locked));
  button.setAttribute("title", locked ? "Seed kept: click for a new seed each time" : "Keep this seed");
  button.setAttribute("aria-label", locked ? "Seed locked" : "Keep this seed");
  button.querySelector("use").setAttribute("href", locked ? "#i-lock" : "#i-unlock");
  $("#seed-hint").textContent = locked ? "This seed is kept for the next images." : "-1 picks a new seed each time. Lock to keep one.";
}

/** After a job: show the seed it used, so locking keeps it. */
export function noteSeed(seed) {
  if (!isLocked() && Number.isInteger(seed)) $("#seed").value = String(seed);
}

// --- filling from stored settings ("reuse settings") -------------------------------

export function fill(settings, { keepReference = false } = {}) {
  clearErrors();
  $("#prompt").value = settings.prompt || "";
  $("#negative").value = settings.negative_prompt || "";
  if (settings.negative_prompt) $("#negative-box").open = true;
  $("#enhance").checked = !!settings.enhance;
  const styleName = settings.style || "None";
  const style = $$("input[name=style]").find((i) => i.value.toLowerCase() === styleName.toLowerCase());
  if (style) style.checked = true;
  updateStyleInfo();
  if (settings.model && ctx.models.some((m) => m.name === settings.model)) $("#model").value = settings.model;
  else if (settings.model) $("#err-model").textContent = `Model ${settings.model} is not installed; using ${$("#model").value}.`;
  onModelChange();
  const model = currentModel();
  const ratios = Object.keys(ASPECT_RATIOS);
  const match = settings.aspect_ratio && ratios.includes(settings.aspect_ratio) ? settings.aspect_ratio
    : model && ratios.find((r) => {
      const [w, h] = sizeForRatio(r, model.native_size);
      return w === settings.width && h === settings.height;
    });
  if (match) selectRatio(match);
  else if (settings.width && settings.height) {
    $("#width").value = settings.width;
    $("#height").value = settings.height;
    selectRatio("custom");
  }
  const count = $(`input[name=count][value="${settings.count || 1}"]`);
  if (settings.strength !== undefined && reference()) setStrength(settings.strength);
  if (count) count.checked = true;
  $("#steps").value = settings.steps ?? "";
  $("#guidance").value = settings.guidance ?? "";
  $("#sampler").value = ctx.samplers.includes(settings.sampler) ? settings.sampler : "";
  if (Number.isInteger(settings.seed) && settings.seed >= 0) {
    setSeed(settings.seed, true);
    $("#advanced").open = true;
  }
  const init = settings.init_image;
  if (keepReference) {
    // a saved prompt leaves the reference image alone
  } else if (init && init.startsWith("image:") && ["img2img", "variation"].includes(settings.mode)) {
    const id = init.slice(6);
    api.get(`/api/images/${id}`).then((image) => {
      setReferenceImage(image);
      setStrength(settings.strength ?? 0.6);
      $("#color-correction").checked = !!settings.color_correction;
    }).catch(() => clearReference());
  } else clearReference();
  changed();
}

// --- generate button --------------------------------------------------------------

function updateCounter() {
  const n = $("#prompt").value.length;
  const counter = $("#prompt-count");
  counter.textContent = `${n}/${MAX_PROMPT}`;
  counter.classList.toggle("near", n > MAX_PROMPT * 0.9);
}

/** Why Generate cannot run now, or "" when it can. */
function blockReason() {
  if (state.submitting) return "Sending…";
  if (ctx.me === null) return ctx.signedOut ? "Sign in with your API key to generate." : "Connecting to the server…";
  if (!ctx.models.length) return "No model is installed.";
  if (!$("#prompt").value.trim()) return "Write a prompt to generate.";
  const est = state.estimate;
  if (est && est.localError) return est.localError;
  if (est && est.error) return `Fix this first: ${sentence(est.error.message)}`;
  if (est && est.affordable === false) {
    return `Not enough credits: this costs ${est.cost} and you have ${est.balance}.`;
  }
  return "";
}

function updateSummary() {
  const parts = [$("#model").value, selectedStyle() && selectedStyle() !== "None" ? selectedStyle() : null];
  const ratio = selectedRatio();
  parts.push(ratio === "custom" ? `${$("#width").value}×${$("#height").value}` : ratio);
  const count = Number($("input[name=count]:checked").value);
  parts.push(`${count} image${count === 1 ? "" : "s"}`);
  if (reference()) parts.push("reference");
  $("#settings-summary").textContent = parts.filter(Boolean).join(" · ");
}

export function refreshButton() {
  updateSummary();
  const reason = blockReason();
  const button = $("#generate");
  button.disabled = !!reason;
  $("#generate-reason").textContent = reason;
  const est = state.estimate;
  $("#generate-cost").textContent = est && Number.isInteger(est.cost) ? `${est.cost} credit${est.cost === 1 ? "" : "s"}` : "";
}

const runEstimate = debounce(async () => {
  const seq = ++state.estimateSeq;
  const request = buildRequest();
  // The cost does not depend on the image itself: check the settings only.
  delete request.init_image;
  request.mode = "txt2img";
  if (!request.prompt.trim()) request.prompt = "estimate";
  const problems = localProblems(request);
  clearErrors();
  for (const slot of new Set(problems.map((p) => p.slot))) {
    document.getElementById(slot).textContent = problems.filter((p) => p.slot === slot).map((p) => p.message).join(" ");
  }
  if (problems.length) {
    state.estimate = { localError: `Fix this first: ${problems[0].message}` };
    refreshButton();
    return;
  }
  if (ctx.me === null) return;
  try {
    const result = await api.post("/api/estimate", request);
    if (seq !== state.estimateSeq) return;
    clearErrors();
    state.estimate = result;
  } catch (err) {
    if (seq !== state.estimateSeq) return;
    clearErrors();
    if (err.status === 401) { ctx.requireKey(err.message); return; }
    showError(err);
    state.estimate = { error: err };
  }
  refreshButton();
}, 200);

/** Something in the form changed: counter now, estimate soon. */
export function changed() {
  updateCounter();
  refreshButton();
  runEstimate();
}

async function generate() {
  if (blockReason()) {
    refreshButton();
    return;
  }
  const request = buildRequest();
  clearErrors();
  state.submitting = true;
  refreshButton();
  try {
    await ctx.submitJob(request);
  } catch (err) {
    if (err.status === 401) ctx.requireKey(err.message);
    else showError(err);
  } finally {
    state.submitting = false;
    refreshButton();
  }
}

export function init() {
  ctx.generate = generate;
  const form = $("#prompt-card");
  form.addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  for (const selector of ["#prompt", "#negative", "#width", "#height", "#steps", "#guidance"]) {
    $(selector).addEventListener("input", changed);
  }
  $("#settings").addEventListener("change", (event) => {
    if (event.target.name === "ratio") updateSizeInfo();
    if (event.target.name === "style") updateStyleInfo();
    changed();
  });
  $("#enhance").addEventListener("change", changed);
  $("#model").addEventListener("change", onModelChange);
  $("#seed").addEventListener("input", () => {
    const v = $("#seed").value.trim();
    setLocked(v !== "" && Number(v) >= 0);
    changed();
  });
  $("#seed-dice").addEventListener("click", () => { setSeed(-1, false); changed(); });
  $("#seed-lock").addEventListener("click", () => {
    const lock = !isLocked();
    if (lock && !(Number($("#seed").value) >= 0)) $("#seed").value = String(Math.floor(Math.random() * 4294967291));
    setLocked(lock);
    changed();
  });
  $("#settings-toggle").addEventListener("click", () => {
    const collapsed = $("#settings").classList.toggle("collapsed");
    $("#settings-toggle").setAttribute("aria-expanded", String(!collapsed));
  });

  for (const button of document.querySelectorAll(".example")) {
    button.addEventListener("click", () => {
      $("#prompt").value = button.textContent;
      changed();
      $("#prompt").focus();
    });
  }
  updateCounter();
  initReference();
  refreshButton();
}
