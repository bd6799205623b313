// Per-input files (docs/reference/formats.md, schema version 6): one input's attention in every head of one layer
// (inputs/S<id>_L<l>.bin.gz: the model view reads every layer's, a head page its layer's) and the featured inputs'
// query/key vectors (vectors/…, the neuron view).
// Blocks are found by the explicit ids of their tables (layer, head; input id), never by their order.

import { AtlasDataError, SCHEMA_VERSION, fetchBuffer, gunzip, versionError } from "./fetch.js";

// manifest.json's `inputs` section, or an error naming what is missing.
export function inputsOf(manifest) {
  const inputs = manifest.inputs;
  if (!inputs || !inputs.files) throw new AtlasDataError("manifest.json has no inputs section: rebuild the site");
  return inputs;
}

// Absolute URL of a per-input file from the manifest's templates ({input}, {layer}, {head}, {kv_head}).
export function inputFileUrl(meta, kind, ids) {
  const template = inputsOf(meta.manifest).files[kind];
  if (!template) throw new AtlasDataError(`manifest.json has no "${kind}" input file template`);
  const rel = template.replace(/\{(input|layer|head|kv_head)\}/g, (_, k) => String(ids[k]));
  return new URL(rel, meta.base).href;
}

// The model-view page of an input, relative to the data folder (models/<name>/inputs/<id>/).
export function modelViewUrl(meta, inputId) {
  // data/<unit>/ → models/<unit>/inputs/<id>/; a unit is model[/dataset][/block]
  const unit = (meta.manifest.unit || meta.manifest.model.name).split("/");
  const path = unit.map(encodeURIComponent).join("/");
  return new URL(`${"../".repeat(unit.length + 1)}models/${path}/inputs/${inputId}/`, meta.base).href;
}

function header(buffer, url, magic, size) {
  const text = String.fromCharCode(...new Uint8Array(buffer, 0, Math.min(4, buffer.byteLength)));
  if (text !== magic || buffer.byteLength < size) throw new AtlasDataError(`${url} is not a ${magic} file`);
  const view = new DataView(buffer);
  const version = view.getUint32(4, true);
  if (version !== SCHEMA_VERSION) throw versionError(url, version);
  return view;
}

const cache = new Map();

function once(url, read) {
  if (!cache.has(url)) {
    const promise = read();
    cache.set(url, promise);
    promise.catch(() => cache.delete(url));
    while (cache.size > 96) cache.delete(cache.keys().next().value);
  }
  return cache.get(url);
}

// One input over the heads of one layer: {inputId, first, n, heads: [{layer, head, kv}], bytes(layer, head) →
// Uint8Array n × n (weight × 255, row = query position) or null}. A file of lower triangles (packing 1, a causal
// model) is expanded per head on first use, zeros above the diagonal.
export function loadInputLayer(meta, inputId, layer) {
  const url = inputFileUrl(meta, "attention", { input: inputId, layer });
  return once(url, async () => {
    const buffer = await gunzip(await fetchBuffer(url), url);
    const view = header(buffer, url, "ATTI", 28);
    const [id, first, n, count, packing] = [8, 12, 16, 20, 24].map((o) => view.getUint32(o, true));
    if (id !== inputId) throw new AtlasDataError(`${url} holds input ${id}, not ${inputId}`);
    if (packing > 1) throw new AtlasDataError(`${url}: unknown block packing ${packing}`);
    if (28 + 16 * count > buffer.byteLength) throw new AtlasDataError(`${url}: its head table is truncated`);
    const size = packing === 1 ? (n * (n + 1)) / 2 : n * n;
    const blocks = new Map();
    const heads = [];
    for (let i = 0; i < count; i++) {
      const [fileLayer, head, kv, offset] = [0, 4, 8, 12].map((o) => view.getUint32(28 + 16 * i + o, true));
      if (fileLayer !== layer) throw new AtlasDataError(`${url} holds a head of layer ${fileLayer}, not ${layer}`);
      if (offset + size > buffer.byteLength) throw new AtlasDataError(`${url}: block of L${layer} H${head} is truncated`);
      blocks.set(head, offset);
      heads.push({ layer, head, kv });
    }
    const expanded = new Map();
    const square = (offset) => {
      const packed = new Uint8Array(buffer, offset, size);
      const out = new Uint8Array(n * n);
      for (let i = 0, at = 0; i < n; at += ++i) out.set(packed.subarray(at, at + i + 1), i * n);
      return out;
    };
    return {
      inputId: id, first, n, heads,
      bytes(l, head) {
        const offset = l === layer ? blocks.get(head) : undefined;
        if (offset === undefined) return null;
        if (packing === 0) return new Uint8Array(buffer, offset, n * n);
        if (!expanded.has(head)) expanded.set(head, square(offset));
        return expanded.get(head);
      },
    };
  });
}

// One input over every head (every layer's file): the same interface as loadInputLayer's.
export async function loadInputAttention(meta, inputId) {
  const layers = Number(meta.manifest.model.num_layers);
  const files = await Promise.all(Array.from({ length: layers }, (_, layer) => loadInputLayer(meta, inputId, layer)));
  const n = files.length ? files[0].n : 0;
  const odd = files.find((f) => f.n !== n || f.first !== files[0].first);
  if (odd) throw new AtlasDataError(`input ${inputId}: its layer files disagree on its tokens (${odd.n} vs ${n})`);
  return {
    inputId, first: files.length ? files[0].first : 0, n, heads: files.flatMap((f) => f.heads),
    bytes: (layer, head) => (files[layer] ? files[layer].bytes(layer, head) : null),
  };
}

// IEEE 754 half precision → number.
export function halfToFloat(h) {
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// One head's vectors over the featured inputs: {layer, role, index, dim, rows(inputId) → Float64Array n × d or null}.
export function loadVectors(meta, role, layer, index) {
  const kind = role === "key" ? "key" : "query";
  const url = inputFileUrl(meta, kind, { layer, head: index, kv_head: index });
  return once(url, async () => {
    const buffer = await fetchBuffer(url);
    const view = header(buffer, url, "QKVF", 32);
    const [fileLayer, fileRole, fileIndex, dim, width, count] = [8, 12, 16, 20, 24, 28].map((o) => view.getUint32(o, true));
    if (fileLayer !== layer || fileRole !== (kind === "key" ? 1 : 0) || fileIndex !== index) {
      throw new AtlasDataError(`${url} holds layer ${fileLayer} ${fileRole ? "key" : "query"} head ${fileIndex}`);
    }
    if (width !== 2 && width !== 4) throw new AtlasDataError(`${url}: values of ${width} bytes are not supported`);
    const blocks = new Map();
    for (let i = 0; i < count; i++) {
      const [id, first, n, offset] = [0, 4, 8, 12].map((o) => view.getUint32(32 + 16 * i + o, true));
      if (offset + n * dim * width > buffer.byteLength) throw new AtlasDataError(`${url}: vectors of input ${id} are truncated`);
      blocks.set(id, { first, n, offset });
    }
    return {
      layer, role: kind, index, dim,
      rows(inputId) {
        const b = blocks.get(inputId);
        if (!b) return null;
        const out = new Float64Array(b.n * dim);
        for (let i = 0; i < out.length; i++) {
          out[i] = width === 2 ? halfToFloat(view.getUint16(b.offset + 2 * i, true)) : view.getFloat32(b.offset + 4 * i, true);
        }
        return { n: b.n, first: b.first, values: out };
      },
    };
  });
}

// The scaling of one layer's scores, from the capture's facts in manifest.json (per layer when they differ).
export function scalingOf(manifest, layer) {
  const m = manifest.model;
  const perLayer = Array.isArray(m.layer_scaling) && m.layer_scaling.length ? Number(m.layer_scaling[layer]) : NaN;
  const s = Number.isFinite(perLayer) ? perLayer : Number(m.scaling);
  if (!Number.isFinite(s)) throw new AtlasDataError("manifest.json: model.scaling is missing");
  return s;
}
