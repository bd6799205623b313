// Loading the files of docs/reference/formats.md (schema version 1). Rows are joined by explicit ids only.

export const SCHEMA_VERSION = 1;
const ARROW_SRC = new URL("../vendor/apache-arrow-21.2.0/Arrow.esnext.min.js", import.meta.url).href;
const MAX_CACHED_HEADS = 32;

export class AtlasDataError extends Error {
  constructor(message) {
    super(message);
    this.name = "AtlasDataError";
  }
}

let arrowPromise = null;

// The vendored bundle is UMD: run it as a classic script once, then use window.Arrow.
export function loadArrow() {
  if (globalThis.Arrow && globalThis.Arrow.tableFromIPC) return Promise.resolve(globalThis.Arrow);
  if (!arrowPromise) {
    arrowPromise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = ARROW_SRC;
      script.onload = () =>
        globalThis.Arrow && globalThis.Arrow.tableFromIPC
          ? resolve(globalThis.Arrow)
          : reject(new AtlasDataError("the Arrow reader loaded but did not define window.Arrow"));
      script.onerror = () => {
        arrowPromise = null;
        reject(new AtlasDataError(`could not load the Arrow reader from ${ARROW_SRC}`));
      };
      document.head.append(script);
    });
  }
  return arrowPromise;
}

function versionError(url, found) {
  return new AtlasDataError(
    `${url} has data schema version ${found}, but this viewer reads schema version ${SCHEMA_VERSION}. ` +
      "Rebuild the site with the attention-atlas version that wrote the data.",
  );
}

async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new AtlasDataError(`could not fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new AtlasDataError(`could not fetch ${url} (HTTP ${response.status})`);
  return response;
}

const prefetched = new Map();

// Starts fetching a file the page will read soon (e.g. a head file while the token tables load).
export function prefetch(url) {
  if (!prefetched.has(url)) {
    const promise = fetchOk(url).then((r) => r.arrayBuffer());
    promise.catch(() => prefetched.delete(url));
    prefetched.set(url, promise);
  }
}

function fetchBuffer(url) {
  const early = prefetched.get(url);
  prefetched.delete(url);
  return early || fetchOk(url).then((r) => r.arrayBuffer());
}

async function loadTable(url) {
  const [Arrow, buffer] = await Promise.all([loadArrow(), fetchBuffer(url)]);
  let table;
  try {
    table = Arrow.tableFromIPC(new Uint8Array(buffer));
  } catch (err) {
    throw new AtlasDataError(`${url} is not a readable Arrow IPC file: ${err.message}`);
  }
  const version = table.schema.metadata.get("atlas.schema_version");
  if (version !== undefined && version !== String(SCHEMA_VERSION)) throw versionError(url, version);
  return table;
}

function column(table, name, url) {
  const vector = table.getChild(name);
  if (!vector) throw new AtlasDataError(`${url} has no column "${name}"`);
  return vector;
}

function numbers(table, name, url) {
  return column(table, name, url).toArray();
}

function values(table, name, url) {
  const out = new Array(table.numRows);
  let i = 0;
  for (const value of column(table, name, url)) out[i++] = value;
  return out;
}

// Image models' patch_row / patch_col (−1 for CLS/register tokens); all −1 for text models.
function optionalInt16(table, name) {
  const vector = table.getChild(name);
  return vector ? Int16Array.from(vector.toArray()) : new Int16Array(table.numRows).fill(-1);
}

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

const models = new Map();
const manifests = new Map();

function cached(cache, base, read) {
  if (!cache.has(base)) {
    const promise = read(base);
    cache.set(base, promise);
    promise.catch(() => cache.delete(base));
  }
  return cache.get(base);
}

// The manifest alone (what a view needs before any point): {base, manifest, layouts2d, headInfo}.
export function loadManifest(base) {
  return cached(manifests, base, readManifest);
}

// The manifest plus the token and point tables.
export function loadModel(base) {
  return cached(models, base, readModel);
}

async function readManifest(base) {
  const manifestUrl = new URL("manifest.json", base).href;
  const manifest = await fetchOk(manifestUrl).then((r) =>
    r.json().catch(() => {
      throw new AtlasDataError(`${manifestUrl} is not valid JSON`);
    }),
  );
  if (manifest.schema_version !== SCHEMA_VERSION) throw versionError(manifestUrl, manifest.schema_version);
  return {
    base,
    manifest,
    layouts2d: manifest.layouts.filter((l) => l.endsWith("-2d")),
    headInfo(layer, head) {
      return manifest.heads.find((h) => h.layer === layer && h.head === head) || null;
    },
  };
}

async function readModel(base) {
  const { manifest, ...meta } = await loadManifest(base);
  const tokensUrl = new URL(manifest.tokens.file, base).href;
  const pointsUrl = new URL(manifest.points.file, base).href;
  const [tt, pt] = await Promise.all([loadTable(tokensUrl), loadTable(pointsUrl)]);
  const tokens = {
    count: tt.numRows,
    id: numbers(tt, "token_id", tokensUrl),
    sentence: numbers(tt, "sentence_id", tokensUrl),
    position: numbers(tt, "position", tokensUrl),
    length: numbers(tt, "sentence_length", tokensUrl),
    text: values(tt, "text", tokensUrl).map((t) => (t === null ? "" : String(t))),
    special: Uint8Array.from(values(tt, "special", tokensUrl), (v) => (v ? 1 : 0)),
    patchRow: optionalInt16(tt, "patch_row"),
    patchCol: optionalInt16(tt, "patch_col"),
  };
  const points = {
    count: pt.numRows,
    id: numbers(pt, "point_id", pointsUrl),
    token: numbers(pt, "token_id", pointsUrl),
    isKey: numbers(pt, "is_key", pointsUrl),
    sentence: numbers(pt, "sentence_id", pointsUrl),
    position: numbers(pt, "position", pointsUrl),
  };
  const tokenRowOf = indexOf(tokens.id);
  points.tokenRow = Int32Array.from(points.token, (id) => tokenRowOf(id));
  if (points.tokenRow.some((r) => r < 0)) throw new AtlasDataError(`${pointsUrl} names token ids missing from ${tokensUrl}`);
  const sentences = new Map();
  for (let row = 0; row < tokens.count; row++) {
    const sid = tokens.sentence[row];
    if (!sentences.has(sid)) sentences.set(sid, []);
    sentences.get(sid).push(row);
  }
  for (const rows of sentences.values()) rows.sort((a, b) => tokens.position[a] - tokens.position[b]);
  let frequency = null;
  return {
    ...meta,
    manifest,
    tokens,
    points,
    sentences,
    pointRowOf: indexOf(points.id),
    tokenRowOf,
    frequency() {
      if (!frequency) {
        const counts = new Map();
        for (const t of tokens.text) counts.set(t, (counts.get(t) || 0) + 1);
        frequency = Float32Array.from(tokens.text, (t) => counts.get(t));
      }
      return frequency;
    },
  };
}

const heads = new Map();

export function loadHead(model, info) {
  const url = new URL(info.file, model.base).href;
  if (heads.has(url)) {
    const hit = heads.get(url);
    heads.delete(url);
    heads.set(url, hit);
    return hit;
  }
  const promise = readHead(model, info, url);
  heads.set(url, promise);
  promise.catch(() => heads.delete(url));
  while (heads.size > MAX_CACHED_HEADS) heads.delete(heads.keys().next().value);
  return promise;
}

function dequantize(codes, [min, max]) {
  const out = new Float32Array(codes.length);
  const step = (max - min) / 65535;
  for (let i = 0; i < codes.length; i++) out[i] = min + codes[i] * step;
  return out;
}

async function readHead(model, info, url) {
  const table = await loadTable(url);
  const meta = table.schema.metadata.get("atlas.ranges");
  let ranges = info.ranges || {};
  if (meta !== undefined) {
    try {
      ranges = JSON.parse(meta);
    } catch {
      throw new AtlasDataError(`${url}: atlas.ranges metadata is not JSON`);
    }
  }
  const ids = numbers(table, "point_id", url);
  const pointRow = Int32Array.from(ids, (id) => model.pointRowOf(id));
  if (pointRow.some((r) => r < 0)) throw new AtlasDataError(`${url} names point ids missing from points.arrow`);
  const layouts = {};
  for (const [name, dims] of Object.entries(ranges)) {
    const axes = "xyz".slice(0, dims.length).split("");
    if (!axes.every((a) => table.getChild(`${name}_${a}`))) continue;
    layouts[name] = { dims: dims.length, range: dims, axes: axes.map((a, d) => dequantize(numbers(table, `${name}_${a}`, url), dims[d])) };
  }
  return { info, n: table.numRows, pointRow, norm: Float32Array.from(numbers(table, "norm", url)), layouts };
}

// Per-row attributes of a head's points (rows in the head file's order), joined through point and token ids.
export function headAttributes(model, head) {
  const { points, tokens } = model;
  const n = head.n;
  const freq = model.frequency();
  const a = {
    n, norm: head.norm, text: new Array(n), isKey: new Uint8Array(n), position: new Uint16Array(n),
    length: new Uint16Array(n), sentence: new Uint32Array(n), pointId: new Uint32Array(n), frequency: new Float32Array(n),
    tokenRow: new Int32Array(n), patchRow: new Int16Array(n), patchCol: new Int16Array(n),
  };
  for (let r = 0; r < n; r++) {
    const p = head.pointRow[r];
    const t = points.tokenRow[p];
    a.isKey[r] = points.isKey[p];
    a.pointId[r] = points.id[p];
    a.position[r] = tokens.position[t];
    a.length[r] = tokens.length[t];
    a.sentence[r] = tokens.sentence[t];
    a.text[r] = tokens.text[t];
    a.frequency[r] = freq[t];
    a.tokenRow[r] = t;
    a.patchRow[r] = tokens.patchRow[t];
    a.patchCol[r] = tokens.patchCol[t];
  }
  return a;
}

const attns = new Map();

export function loadAttention(model, info) {
  const url = new URL(info.attn, model.base).href;
  if (!attns.has(url)) {
    const promise = readAttention(url);
    attns.set(url, promise);
    promise.catch(() => attns.delete(url));
    while (attns.size > 8) attns.delete(attns.keys().next().value);
  }
  return attns.get(url);
}

async function readAttention(url) {
  const buffer = await fetchOk(url).then((r) => r.arrayBuffer());
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, Math.min(4, buffer.byteLength)));
  if (magic !== "ATTN" || buffer.byteLength < 12) throw new AtlasDataError(`${url} is not an attention file`);
  const version = view.getUint32(4, true);
  if (version !== SCHEMA_VERSION) throw versionError(url, version);
  const count = view.getUint32(8, true);
  const blocks = new Map();
  for (let i = 0; i < count; i++) {
    const at = 12 + 16 * i;
    const [sid, first, n, offset] = [0, 4, 8, 12].map((o) => view.getUint32(at + o, true));
    if (offset + n * n > buffer.byteLength) throw new AtlasDataError(`${url}: block of sentence ${sid} is truncated`);
    blocks.set(sid, { first, n, offset });
  }
  const bytes = new Uint8Array(buffer);
  return {
    blocks,
    // Row-major n × n weights of one sentence (row = query position), or null when the sentence is absent.
    matrix(sid) {
      const b = blocks.get(sid);
      if (!b) return null;
      const w = new Float32Array(b.n * b.n);
      for (let i = 0; i < w.length; i++) w[i] = bytes[b.offset + i] / 255;
      return { n: b.n, first: b.first, w };
    },
  };
}
