// The reference image of image to image: upload (file picker, drag and drop)
// or a stored image, the denoising strength, and "Analyse".

import * as api from "./api.js";
import { changed, expandSettings, onModelChange, selectedRatio, selectRatio } from "./form.js";
import { nearestRatio, parseInfotext, pngTextChunks } from "./pnginfo.js";
import { $, ASPECT_RATIOS, ctx, sentence, toast } from "./state.js";

/** {kind: "upload", dataUri, blob, name, width, height} | {kind: "image", id, url, width, height, model} | null */
let current = null;

export function reference() {
  return current;
}

export function setStrength(value) {
  $("#strength").value = value;
  updateStrength();
}

function readDataUri(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function imageSize(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
    img.onerror = () => reject(new Error("not an image"));
    img.src = src;
  });
}

export async function setUpload(file) {
  $("#err-reference").textContent = "";
  if (!file) return;
  if (!/^image\//.test(file.type)) {
    $("#err-reference").textContent = `${file.name} is not an image: choose a PNG, JPEG or WebP file.`;
    return;
  }
  if (file.size > 20 * 1024 * 1024) {
    $("#err-reference").textContent = `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is 20 MB.`;
    return;
  }
  const dataUri = await readDataUri(file);
  let size;
  try { size = await imageSize(dataUri); } catch {
    $("#err-reference").textContent = `${file.name} could not be read as an image.`;
    return;
  }
  setReference({ kind: "upload", dataUri, blob: file, name: file.name, width: size[0], height: size[1] });
}

/** Use a stored image as the reference. */
export function setReferenceImage(image) {
  setReference({ kind: "image", id: image.id, url: image.url, width: image.width, height: image.height, model: image.model });
}

function setReference(ref) {
  document.body.classList.remove("picking");
  current = ref;
  expandSettings();
  const img = $("#reference-image");
  img.hidden = false;
  if (ref.kind === "upload") img.src = ref.dataUri;
  else api.showImage(img, ref.url);
  $("#dropzone-hint").hidden = true;
  $("#reference-pick").hidden = true;
  $("#reference-tools").hidden = false;
  $("#analyse-result").textContent = "";
  const ratio = nearestRatio(ref.width, ref.height, ASPECT_RATIOS);
  if (ratio && selectedRatio() !== "custom") selectRatio(ratio);
  $("#analyse-result").textContent = `${ref.width} × ${ref.height} px · size set to ${selectedRatio()}`;
  img.addEventListener("load", updateModeChip, { once: true });
  updateModeChip();
  changed();
}

export function clearReference() {
  current = null;
  const img = $("#reference-image");
  img.hidden = true;
  img.removeAttribute("src");
  $("#dropzone-hint").hidden = false;
  $("#reference-pick").hidden = false;
  $("#reference-tools").hidden = true;
  $("#reference-file").value = "";
  $("#err-reference").textContent = "";
  updateModeChip();
  changed();
}

/** Ask the server to analyse the reference, when it offers that; null otherwise. */
async function serverAnalysis(ref, blob) {
  if (!ctx.caps.analyse) return null;
  try {
    const body = new FormData();
    body.append("image", blob, ref.name || "reference.png");
    return await (await api.raw(ctx.caps.analyse, { method: "POST", body })).json();
  } catch {
    return null; // fall back to reading the PNG here
  }
}

/** Fill prompt, model and size proposals for the reference: from the server's
 * analysis when it has one, else from the PNG's "parameters" chunk. */
async function analyse() {
  const ref = current;
  if (!ref) return;
  const out = $("#analyse-result");
  out.textContent = "Analysing…";
  let blob = ref.blob;
  try {
    if (!blob) blob = await (await api.raw(ref.url)).blob();
  } catch (err) {
    out.textContent = sentence(err.message);
    return;
  }
  const found = { prompt: "", negative_prompt: "", model: null, fields: {}, source: "none" };
  const server = await serverAnalysis(ref, blob);
  if (server && typeof server === "object") {
    Object.assign(found, {
      prompt: server.prompt || "", negative_prompt: server.negative_prompt || "", model: server.model || null,
      fields: server.fields || {}, source: server.source || "server",
    });
  } else {
    const chunks = await pngTextChunks(blob).catch(() => ({}));
    if (chunks.parameters) {
      const info = parseInfotext(chunks.parameters);
      Object.assign(found, { prompt: info.prompt, negative_prompt: info.negative_prompt, model: info.fields.Model || null,
        fields: info.fields, source: "parameters" });
    }
  }
  const notes = [];
  if (found.prompt) { $("#prompt").value = found.prompt; notes.push("prompt"); }
  if (found.negative_prompt) { $("#negative").value = found.negative_prompt; $("#negative-box").open = true; }
  if (found.model && ctx.models.some((m) => m.name === found.model)) {
    $("#model").value = found.model;
    onModelChange();
    notes.push(`model ${found.model}`);
  } else if (found.model) notes.push(`model ${found.model} is not installed here`);
  const f = found.fields;
  if (f.Steps) $("#steps").value = f.Steps;
  if (f["CFG scale"]) $("#guidance").value = f["CFG scale"];
  if (f.Sampler && ctx.samplers.includes(f.Sampler)) $("#sampler").value = f.Sampler;
  const ratio = nearestRatio(ref.width, ref.height, ASPECT_RATIOS);
  selectRatio(ratio);
  notes.push(`size ${ratio} (the image is ${ref.width} × ${ref.height})`);
  if (!found.prompt) out.textContent = `This image carries no prompt: describe it yourself. Proposed ${notes.join(", ")}.`;
  else if (found.source === "judge") out.textContent = `A guess from the embedded model: ${notes.join(", ")}. Edit anything before generating.`;
  else out.textContent = `Filled from the image: ${notes.join(", ")}. Edit anything before generating.`;
  changed();
}

function updateStrength() {
  $("#strength-value").textContent = Number($("#strength").value).toFixed(2);
  updateModeChip();
}

/** Near the prompt: which reference the next images start from. */
function updateModeChip() {
  const ref = current;
  $("#mode-chip").hidden = !ref;
  if (!ref) return;
  $("#mode-chip-image").src = $("#reference-image").src;
  $("#mode-chip-text").textContent = `Image to image · change ${Number($("#strength").value).toFixed(2)}`;
}

export function initReference() {
  $("#strength").addEventListener("input", updateStrength);
  const drop = $("#dropzone");
  const file = $("#reference-file");
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); file.click(); }
  });
  file.addEventListener("change", () => setUpload(file.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const dropped = event.dataTransfer.files[0];
    if (dropped) setUpload(dropped);
    else toast("Drop an image file here.", { error: true });
  });
  $("#reference-clear").addEventListener("click", clearReference);
  $("#mode-chip-clear").addEventListener("click", clearReference);
  $("#reference-pick").addEventListener("click", () => {
    document.body.classList.add("picking");
    ctx.showView("history");
    toast("Choose an image and press its “Use as reference” button.");
  });
  $("#analyse").addEventListener("click", analyse);
  updateStrength();
}
