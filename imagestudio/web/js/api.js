// The native API (/api) with the API key of shared mode, JSON errors turned
// into ApiError, and images fetched with the key when a plain <img src> cannot
// send it.

const KEY_STORAGE = "imagestudio.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const auth = {
  get key() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  },
  set key(value) {
    try {
      if (value) localStorage.setItem(KEY_STORAGE, value);
      else localStorage.removeItem(KEY_STORAGE);
    } catch { /* private mode: the key lives for this page only */ }
    memoryKey = value || "";
  },
};
let memoryKey = "";

function headers(extra = {}) {
  const key = auth.key || memoryKey;
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

export async function raw(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) throw await toError(response);
  return response;
}

async function toError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const err = body && body.error;
  if (err) return new ApiError(response.status, err.code, err.message, err.details || []);
  const text = response.status === 413 ? "the upload is too large for this server"
    : `the server answered ${response.status} ${response.statusText}`;
  return new ApiError(response.status, "http_error", text);
}

export async function get(path) {
  return (await raw(path)).json();
}

export async function send(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await raw(path, options);
  return response.status === 204 ? null : response.json();
}

export const post = (path, body) => send("POST", path, body);
export const del = (path) => send("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

// --- images ---------------------------------------------------------------

const blobUrls = new Map();

/** A URL an <img> can show: the API URL itself without a key, else a blob URL. */
export async function imageUrl(path) {
  if (!(auth.key || memoryKey)) return path;
  if (blobUrls.has(path)) return blobUrls.get(path);
  const blob = await (await raw(path)).blob();
  const url = URL.createObjectURL(blob);
  blobUrls.set(path, url);
  return url;
}

export function showImage(img, path) {
  img.dataset.src = path;
  imageUrl(path).then((url) => {
    if (img.dataset.src === path) img.src = url;
  }).catch(() => img.classList.add("broken"));
}

/** Save an image file with the browser's download. */
export async function download(path, filename) {
  const blob = await (await raw(path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// --- server-sent events ---------------------------------------------------

/** Read an SSE stream with fetch (EventSource cannot send the API key).
 * Calls onEvent(name, data) for each event; resolves when the stream ends. */
export async function events(path, onEvent, signal) {
  const response = await raw(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
