// Loading the files of docs/reference/formats.md (schema version 6). Rows are joined by explicit ids only: tokens
// name their query/key point ids, and every per-point file of a head lists its points in ascending point id order.

import { AtlasDataError, SCHEMA_VERSION, fetchBuffer, fetchJson, gunzip, loadTable, versionError } from "./fetch.js";
import { loadInputLayer } from "./inputs-data.js";
import { displayToken } from "./token-text.js";

export { AtlasDataError, SCHEMA_VERSION, gunzip, prefetch } from "./fetch.js";

const MAX_CACHED_LAYOUTS = 48;

// id → row lookup; dense Int32Array when the ids allow it, a Map otherwise.
function indexOf(ids) {
  let max = 0;
  for (const id of ids) if (id > max) max = id;
  if (max <= ids.length * 8 + 1024) {
    const table = new Int32Array(max + 1).fill(-1);
    ids.forEach((id, row) => (table[id] = row));
    return (id) => (id >= 0 && id < table.length ? table[id] : -1);
  }
  const map = new Map();
  ids.forEach((id, row) => map.set(id, row));
  return (id) => (map.has(id) ? map.get(id) : -1);
}

function cached(cache, key, read, limit = Infinity) {
  if (cache.has(key)) {
    const hit = cache.get(key);
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const promise = read();
  cache.set(key, promise);
  promise.catch(() => cache.delete(key));
  while (cache.size > limit) cache.delete(cache.keys().next().value);
  return promise;
}

const manifests = new Map();
const models = new Map();

// The manifest alone (what a view needs before any point): {base, manifest, layouts2d, defaultLayout, headInfo, url}.
export function loadManifest(base) {
  return cached(manifests, base, () => readManifest(base));
}

// The manifest plus the tokens and the points they name.
export function loadModel(base) {
  return cached(models, base, () => readModel(base));
}

async function readManifest(base) {
  const manifest = await fetchJson(new URL("manifest.json", base).href);
  const files = manifest.files || {};
  const byId = new Map(manifest.heads.map((h) => [`${h.layer}:${h.head}`, h]));
  return {
    base,
    manifest,
    layouts2d: manifest.layouts.filter((l) => l.endsWith("-2d")),
    // The layout views open with: the manifest's default_layout, else the first 2D layout.
    defaultLayout: manifest.layouts.includes(manifest.default_layout) ? manifest.default_layout
      : manifest.layouts.find((l) => l.endsWith("-2d")) || manifest.layouts[0],
    thumbLayouts: new Set((manifest.thumbnails || {}).layouts || []),
    headInfo: (layer, head) => byId.get(`${layer}:${head}`) || null,
    // Absolute URL of one per-head file from the manifest's path templates.
    url(kind, layer, head, layout = "") {
      const template = files[kind];
      if (!template) throw new AtlasDataError(`manifest.json has no "${kind}" file template`);
      const rel = template.replaceAll("{layer}", String(layer)).replaceAll("{head}", String(head)).replaceAll("{layout}", layout);
      return new URL(rel, base).href;
    },
    // Where a layout's coordinates are: {url, layout: the file's layout, dims: null, or the number of its first axes
    // the layout is when it is nested in another layout's file (manifest.json's nested_layouts)}.
    coordsFile(layer, head, layout) {
      const nested = (manifest.nested_layouts || {})[layout];
      const file = nested ? nested.layout : layout;
      return { url: this.url("coords", layer, head, file), layout: file, dims: nested ? nested.dims : null };
    },
  };
}

async function readModel(base) {
  const meta = await loadManifest(base);
  const url = new URL(meta.manifest.tokens.file, base).href;
  const tt = await loadTable(url);
  const tokens = {
    count: tt.rows,
    id: tt.numbers("token_id"),
    sentence: tt.numbers("sentence_id"),
    position: tt.numbers("position"),
    // What each token stands for, drawn with visible whitespace marks (token-text.js), and the tokenizer's piece.
    text: tt.strings("text").map(displayToken),
    piece: tt.strings("piece"),
    special: Uint8Array.from(tt.numbers("special")),
    patchRow: tt.has("patch_row") ? Int16Array.from(tt.numbers("patch_row")) : new Int16Array(tt.rows).fill(-1),
    patchCol: tt.has("patch_col") ? Int16Array.from(tt.numbers("patch_col")) : new Int16Array(tt.rows).fill(-1),
    // Cross-attention: 0 = query-side token (decoder), 1 = key-side token (encoder); null for self-attention.
    side: tt.has("side") ? Uint8Array.from(tt.numbers("side")) : null,
  };
  const sentences = new Map();
  for (let row = 0; row < tokens.count; row++) {
    const sid = tokens.sentence[row];
    if (!sentences.has(sid)) sentences.set(sid, []);
    sentences.get(sid).push(row);
  }
  for (const rows of sentences.values()) rows.sort((a, b) => tokens.position[a] - tokens.position[b]);
  tokens.length = Uint16Array.from(tokens.sentence, (sid) => sentences.get(sid).length);
  // Position and length within the token's own side (a cross-attention input holds two sequences).
  tokens.sidePosition = tokens.position;
  tokens.sideLength = tokens.length;
  if (tokens.side) {
    const starts = new Map();
    for (let row = 0; row < tokens.count; row++) {
      if (tokens.side[row] === 0) starts.set(tokens.sentence[row], (starts.get(tokens.sentence[row]) || 0) + 1);
    }
    tokens.sidePosition = Uint16Array.from(tokens.position, (p, row) => (tokens.side[row] ? p - (starts.get(tokens.sentence[row]) || 0) : p));
    tokens.sideLength = Uint16Array.from(tokens.length, (n, row) => {
      const start = starts.get(tokens.sentence[row]) || 0;
      return tokens.side[row] ? n - start : start;
    });
  }
  const points = readPoints(tt, url);
  if (meta.manifest.points && meta.manifest.points.count !== points.count) {
    throw new AtlasDataError(`${url} names ${points.count} points, manifest.json says ${meta.manifest.points.count}`);
  }
  const model = { ...meta, tokens, points, sentences, tokenRowOf: indexOf(tokens.id), pointRowOf: indexOf(points.id) };
  // The id of a token row's query or key point (from tokens.arrow's query_point / key_point), or null.
  model.pointOfToken = (row, isKey) => {
    const r = points.ofToken[2 * row + (isKey ? 1 : 0)];
    return r >= 0 ? points.id[r] : null;
  };
  // The id of the query or key point at a position of a sentence, or null.
  model.pointAt = (sid, position, isKey) => {
    const rows = sentences.get(sid) || [];
    const row = tokens.position[rows[position]] === position ? rows[position] : rows.find((t) => tokens.position[t] === position);
    return row === undefined ? null : model.pointOfToken(row, isKey);
  };
  model.attrs = pointAttributes(model);
  return model;
}

// Every point named by the tokens, in ascending point id order (the row order of every per-point head file);
// ofToken[2 * tokenRow + isKey] is the row of a token's query / key point (-1: none).
function readPoints(tt, url) {
  const q = tt.nullable("query_point");
  const k = tt.nullable("key_point");
  const entries = [];
  for (let row = 0; row < tt.rows; row++) {
    if (!q.valid || q.valid[row]) entries.push([q.values[row], row, 0]);
    if (!k.valid || k.valid[row]) entries.push([k.values[row], row, 1]);
  }
  entries.sort((a, b) => a[0] - b[0]);
  const n = entries.length;
  const points = { count: n, id: new Uint32Array(n), tokenRow: new Int32Array(n), isKey: new Uint8Array(n),
    ofToken: new Int32Array(2 * tt.rows).fill(-1) };
  entries.forEach(([id, row, key], i) => {
    if (i && entries[i - 1][0] === id) throw new AtlasDataError(`${url} gives point id ${id} to two points`);
    [points.id[i], points.tokenRow[i], points.isKey[i], points.ofToken[2 * row + key]] = [id, row, key, i];
  });
  return points;
}

// Per point row (ascending point id): the token's attributes the views colour, label and search by.
function pointAttributes(model) {
  const { points, tokens } = model;
  const n = points.count;
  const counts = new Map();
  for (const t of tokens.text) counts.set(t, (counts.get(t) || 0) + 1);
  const a = {
    n, norm: null, text: new Array(n), isKey: points.isKey, position: new Uint16Array(n), length: new Uint16Array(n),
    sentence: new Uint32Array(n), pointId: points.id, frequency: new Float32Array(n), tokenRow: points.tokenRow,
    patchRow: new Int16Array(n), patchCol: new Int16Array(n),
  };
  for (let r = 0; r < n; r++) {
    const t = points.tokenRow[r];
    a.position[r] = tokens.sidePosition[t];
    a.length[r] = tokens.sideLength[t];
    a.sentence[r] = tokens.sentence[t];
    a.text[r] = tokens.text[t];
    a.frequency[r] = counts.get(tokens.text[t]);
    a.patchRow[r] = tokens.patchRow[t];
    a.patchCol[r] = tokens.patchCol[t];
  }
  return a;
}

const details = new Map();

// A head's own file: label, scores, normalization, trust, related heads, tiles.
export function loadHeadDetail(meta, layer, head) {
  const url = meta.url("head", layer, head);
  return cached(details, url, () => fetchJson(url));
}

function dequantize(codes, [min, max], qmax) {
  const out = new Float32Array(codes.length);
  const step = (max - min) / qmax;
  for (let i = 0; i < codes.length; i++) out[i] = min + codes[i] * step;
  return out;
}

function rangeOf(table, url) {
  const text = table.meta("atlas.range");
  try {
    return JSON.parse(text);
  } catch {
    throw new AtlasDataError(`${url}: atlas.range metadata is missing or not JSON`);
  }
}

function checkRows(model, table, url) {
  if (table.rows !== model.points.count) {
    throw new AtlasDataError(`${url} has ${table.rows} rows for the ${model.points.count} points of tokens.arrow`);
  }
}

const layouts = new Map();

// One layout of one head: {dims, range, bits, axes: [Float32Array per axis]} in point order. A nested layout is the
// first axes of its file's (each axis has its own range, so they are exactly its coordinates).
export function loadLayout(model, layer, head, layout) {
  const file = model.coordsFile(layer, head, layout);
  const whole = () => cached(layouts, file.url, async () => {
    const buffer = await gunzip(await fetchBuffer(file.url), file.url);
    return readCoords(buffer, file.url, { layer, head, layout: file.layout, points: model.points.count });
  }, MAX_CACHED_LAYOUTS);
  if (file.dims === null) return whole();
  return cached(layouts, `${file.url}#${file.dims}`, async () => {
    const c = await whole();
    if (c.dims < file.dims) throw new AtlasDataError(`${file.url} has ${c.dims} axes, ${layout} needs ${file.dims}`);
    return { ...c, dims: file.dims, range: c.range.slice(0, file.dims), axes: c.axes.slice(0, file.dims) };
  }, MAX_CACHED_LAYOUTS);
}

// Undoes the byte planes of `count` little-endian elements of `size` bytes starting at `offset` (an ArrayBuffer).
export function fromBytePlanes(buffer, offset, count, size) {
  const planes = new Uint8Array(buffer, offset, count * size);
  const out = new Uint8Array(count * size);
  for (let b = 0; b < size; b++) for (let i = 0; i < count; i++) out[i * size + b] = planes[b * count + i];
  return out.buffer;
}

// A coordinates file (formats.md): a header naming the head and layout, [min, max] per axis, then the codes as
// byte planes: every axis's high bytes, then every axis's low bytes (only one plane per axis when bits <= 8).
// `expect.values`: a value layout (VCRD: `head` is the key/value head, the rows' token ids follow the ranges, as
// four byte planes of u32); its rows come back as `tokenIds`.
export function readCoords(buffer, url, expect) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== (expect.values ? "VCRD" : "CRDS") || buffer.byteLength < 32) {
    throw new AtlasDataError(`${url} is not a ${expect.values ? "value " : ""}coordinates file`);
  }
  const view = new DataView(buffer);
  const version = view.getUint32(4, true);
  if (version !== SCHEMA_VERSION) throw versionError(url, version);
  const [layer, head, points, dims, bits, nameLength] = [8, 12, 16, 20, 24, 28].map((o) => view.getUint32(o, true));
  const name = String.fromCharCode(...bytes.subarray(32, 32 + nameLength));
  if (layer !== expect.layer || head !== expect.head || name !== expect.layout) {
    throw new AtlasDataError(`${url} holds layer ${layer} head ${head} ${name}`);
  }
  if (!expect.values && points !== expect.points) {
    throw new AtlasDataError(`${url} has ${points} rows for the ${expect.points} points of tokens.arrow`);
  }
  if (dims < 1 || dims > 3 || bits < 1 || bits > 16) throw new AtlasDataError(`${url}: ${dims} axes of ${bits} bits`);
  let at = 32 + nameLength;
  const range = [];
  if (buffer.byteLength < at + 16 * dims) throw new AtlasDataError(`${url} is truncated`);
  for (let d = 0; d < dims; d++, at += 16) range.push([view.getFloat64(at, true), view.getFloat64(at + 8, true)]);
  const idBytes = expect.values ? 4 * points : 0;
  const width = bits > 8 ? 2 : 1;
  if (buffer.byteLength !== at + idBytes + width * points * dims) throw new AtlasDataError(`${url} is truncated`);
  const tokenIds = expect.values ? new Uint32Array(fromBytePlanes(buffer, at, points, 4)) : null;
  at += idBytes;
  const axes = range.map((r, d) => {
    const hi = bytes.subarray(at + d * points, at + (d + 1) * points);
    const lo = width === 2 ? bytes.subarray(at + (dims + d) * points, at + (dims + d + 1) * points) : null;
    return dequantize(lo ? Uint16Array.from(hi, (h, i) => h * 256 + lo[i]) : hi, r, 2 ** bits - 1);
  });
  return { dims, range, bits, axes, tokenIds };
}

const norms = new Map();

// ‖q‖ / ‖k‖ of every point of a head (point order).
export function loadNorms(model, layer, head) {
  const url = model.url("norms", layer, head);
  return cached(norms, url, async () => {
    const table = await loadTable(url);
    checkRows(model, table, url);
    return dequantize(table.numbers("norm"), rangeOf(table, url), 255);
  }, MAX_CACHED_LAYOUTS);
}

const aggregates = new Map();

// The head's aggregate pattern (mean attention by relative position, or by 2D patch offset for images).
export function loadAggregate(model, layer, head) {
  const url = model.url("aggregate", layer, head);
  return cached(aggregates, url, () => fetchJson(url), 8);
}

// One head's attention on one sentence: {n, first, w: Float32Array n × n (row-major, row = query position)} or
// null when the input has no such head. It comes from the input's file for the head's layer, which the model
// view reads too (the only copy of the weights).
export async function loadSentenceAttention(model, layer, head, sid) {
  const file = await loadInputLayer(model, sid, layer);
  const bytes = file.bytes(layer, head);
  if (!bytes) return null;
  const w = new Float32Array(bytes.length);
  for (let i = 0; i < w.length; i++) w[i] = bytes[i] / 255;
  return { n: file.n, first: file.first, w };
}

// The k strongest keys of row `row` of an n × n weight matrix w (row-major): [{position, weight}], strongest first,
// ties to the lower position, zero weights left out.
export function strongest(w, n, row, k) {
  const best = [];
  for (let j = 0; j < n; j++) {
    const weight = w[row * n + j];
    if (!(weight > 0)) continue;
    let at = best.length;
    while (at > 0 && best[at - 1].weight < weight) at--;
    if (at < k) best.splice(at, 0, { position: j, weight });
    if (best.length > k) best.pop();
  }
  return best;
}
