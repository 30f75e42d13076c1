// Read the AUTOMATIC1111 "parameters" text chunk of a PNG in the browser, so
// "Analyse" can fill the form for an uploaded image without a server call.

export async function pngTextChunks(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || signature.some((b, i) => bytes[i] !== b)) return {};
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  const chunks = {};
  let pos = 8;
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = latin1.decode(bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (type === "tEXt" || type === "iTXt" || type === "zTXt") {
      const nul = data.indexOf(0);
      const keyword = latin1.decode(data.subarray(0, nul));
      if (type === "tEXt") {
        chunks[keyword] = latin1.decode(data.subarray(nul + 1));
      } else if (type === "zTXt") {
        chunks[keyword] = await inflate(data.subarray(nul + 2), latin1);
      } else {
        const compressed = data[nul + 1] === 1;
        let p = nul + 3;
        p = data.indexOf(0, p) + 1; // language tag
        p = data.indexOf(0, p) + 1; // translated keyword
        const text = data.subarray(p);
        chunks[keyword] = compressed ? await inflate(text, utf8) : utf8.decode(text);
      }
    }
    if (type === "IEND") break;
    pos += 12 + length;
  }
  return chunks;
}

async function inflate(data, decoder) {
  if (typeof DecompressionStream === "undefined") return "";
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return decoder.decode(new Uint8Array(await new Response(stream).arrayBuffer()));
}

/** A1111 infotext -> {prompt, negative_prompt, fields: {Steps, Sampler, ...}} */
export function parseInfotext(text) {
  const lines = (text || "").trim().split("\n");
  const fields = {};
  const pair = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
  const last = lines[lines.length - 1] || "";
  const matches = [...last.matchAll(pair)];
  if (matches.length >= 3) {
    lines.pop();
    for (const [, key, value] of matches) {
      let v = value.trim();
      if (v.startsWith('"') && v.endsWith('"')) {
        try { v = JSON.parse(v); } catch { v = v.slice(1, -1); }
      }
      fields[key.trim()] = v;
    }
  }
  const prompt = [];
  const negative = [];
  let inNegative = false;
  for (const line of lines) {
    if (line.startsWith("Negative prompt:")) {
      inNegative = true;
      negative.push(line.slice("Negative prompt:".length).trim());
    } else (inNegative ? negative : prompt).push(line);
  }
  return { prompt: prompt.join("\n").trim(), negative_prompt: negative.join("\n").trim(), fields };
}

/** The ratio name in `ratios` ({"16:9": [16, 9], ...}) closest to width/height. */
export function nearestRatio(width, height, ratios) {
  let best = null;
  let bestDistance = Infinity;
  for (const [name, [w, h]] of Object.entries(ratios)) {
    const distance = Math.abs(Math.log((width / height) / (w / h)));
    if (distance < bestDistance) { best = name; bestDistance = distance; }
  }
  return best;
}
