// Colour encodings of points. Each encoding is one entry of ENCODINGS: its id and label, the models it applies to
// ("text", "image" or "both"), what it needs loaded first ("norms", "pixels"), `fill` (writes every point's RGB and
// returns what the legend shows) and `legend`. The colours come from manifest.json's `colours`, written from
// atlas_build/export/colours.py, the one place they are defined.

import { AtlasDataError } from "./fetch.js";
import { normalizeToken } from "./token-text.js";

const HEX = /^#[0-9a-f]{6}$/i;
const PUNCT_RE = /^[\p{P}\p{S}]+$/u;
const PREFIX = "[CLS] / register tokens";
const HUES = [0, 1, 2, 3, 4, 5, 6].map((k) => hueColour(k / 6));

function rgbOf(value, name) {
  if (typeof value !== "string" || !HEX.test(value)) throw new AtlasDataError(`manifest.json: colours.${name} is not a #rrggbb colour`);
  return [1, 3, 5].map((i) => parseInt(value.slice(i, i + 2), 16));
}

function stopsOf(value, name, count = 0) {
  if (!Array.isArray(value) || value.length < 2 || (count && value.length !== count)) {
    throw new AtlasDataError(`manifest.json: colours.${name} is not a list of ${count || "at least 2"} colours`);
  }
  return value.map((v, k) => rgbOf(v, `${name}[${k}]`));
}

// manifest.json's `colours` as RGB triples (ramps as lists of them); a missing or malformed entry is an error.
export function paletteOf(manifest) {
  const c = manifest.colours;
  if (!c || typeof c !== "object") throw new AtlasDataError("manifest.json has no colours: rebuild the site");
  return {
    query: rgbOf(c.query, "query"), key: rgbOf(c.key, "key"),
    punctuation: rgbOf(c.punctuation, "punctuation"), other: rgbOf(c.other, "other"),
    queryRamp: stopsOf(c.query_ramp, "query_ramp"), keyRamp: stopsOf(c.key_ramp, "key_ramp"),
    viridis: stopsOf(c.viridis, "viridis"), plasma: stopsOf(c.plasma, "plasma"), greys: stopsOf(c.greys, "greys"),
    mod5: stopsOf(c.mod5, "mod5", 5),
  };
}

// The query and key colours as atlas.css's --atlas-query / --atlas-key, set on a view's root at mount.
export function setCssColours(root, palette) {
  root.style.setProperty("--atlas-query", hex(palette.query));
  root.style.setProperty("--atlas-key", hex(palette.key));
}

export function ramp(stops, t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}

function shade(rgb, factor) {
  return factor < 1 ? rgb.map((c) => Math.round(c * factor)) : rgb.map((c) => Math.round(c + (255 - c) * (factor - 1)));
}

export function hex(rgb) {
  return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join("");
}

export function isPunctuation(text) {
  const t = normalizeToken(text);
  return t.length > 0 && PUNCT_RE.test(t);
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

// HSV(h, 0.75, 0.9) for a hue in [0, 1).
export function hueColour(h) {
  const [s, v] = [0.75, 0.9];
  const f = (k) => {
    const x = (k + h * 6) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(x, 4 - x, 1))));
  };
  return [f(5), f(3), f(1)];
}

function formatNumber(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

const each = (p, put, colour) => {
  for (let i = 0; i < p.n; i++) put(i, colour(i));
};

// A patch coordinate on a ramp (0 … its largest value); CLS/register tokens (−1) in the `other` colour.
function patchRamp(values, p, put, stops, other) {
  let max = 1;
  for (let i = 0; i < p.n; i++) max = Math.max(max, values[i]);
  each(p, put, (i) => (values[i] < 0 ? other : ramp(stops, values[i] / max)));
}

// Values (or their logarithms) on viridis between their extremes; returns the extremes.
function sequential(values, p, put, c, log = false) {
  const [lo, hi] = extent(log ? values.map((v) => Math.log(v)) : values);
  each(p, put, (i) => ramp(c.viridis, ((log ? Math.log(values[i]) : values[i]) - lo) / (hi - lo)));
  return log ? [Math.exp(lo), Math.exp(hi)] : [lo, hi];
}

const rangeLegend = (c, [lo, hi]) => ({ gradients: [["", c.viridis]], from: formatNumber(lo), to: formatNumber(hi) });
const kinds = "queries darker, keys lighter";

// p: per point, in drawing order — n, isKey, position, length, norm, text, frequency, patchRow, patchCol, tokenRow;
// c: paletteOf(manifest); f: per-token patch features of image models (images.js), for needs "pixels".
export const ENCODINGS = [
  {
    id: "qk", label: "query / key", applies: "both", pictured: true,
    fill: (p, put, c) => each(p, put, (i) => (p.isKey[i] ? c.key : c.query)),
    legend: (c) => ({ swatches: [["query", c.query], ["key", c.key]] }),
  },
  {
    id: "patch-row", label: "patch row", applies: "image",
    fill: (p, put, c) => patchRamp(p.patchRow, p, put, c.plasma, c.other),
    legend: (c) => ({ gradients: [["", c.plasma]], from: "top row", to: "bottom row", swatches: [[PREFIX, c.other]] }),
  },
  {
    id: "patch-col", label: "patch column", applies: "image",
    fill: (p, put, c) => patchRamp(p.patchCol, p, put, c.viridis, c.other),
    legend: (c) => ({ gradients: [["", c.viridis]], from: "left column", to: "right column", swatches: [[PREFIX, c.other]] }),
  },
  {
    id: "hue", label: "mean hue", applies: "image", needs: "pixels",
    fill: (p, put, c, f) => each(p, put, (i) => (Number.isNaN(f.hue[p.tokenRow[i]]) ? c.other : hueColour(f.hue[p.tokenRow[i]]))),
    legend: (c) => ({ gradients: [["", HUES]], from: "0°", to: "360°", swatches: [["grey / not a patch", c.other]] }),
  },
  {
    id: "brightness", label: "mean brightness", applies: "image", needs: "pixels",
    fill: (p, put, c, f) => each(p, put, (i) => {
      const v = f.brightness[p.tokenRow[i]];
      return Number.isNaN(v) ? c.other : ramp(c.greys, v);
    }),
    legend: (c) => ({ gradients: [["", c.greys]], from: "dark", to: "bright", swatches: [[PREFIX, c.other]] }),
  },
  {
    // The head view draws each patch as a sprite of its pixels framed in its query/key colour.
    id: "pixels", label: "patch pixels", applies: "image", needs: "pixels", sprites: true,
    fill: (p, put, c, f) => each(p, put, (i) => {
      const t = p.tokenRow[i];
      return p.patchRow[i] < 0 ? (p.isKey[i] ? c.key : c.query) : f.meanRgb.subarray(3 * t, 3 * t + 3);
    }),
    legend: (c) => ({ swatches: [["query frame", c.query], ["key frame", c.key]],
      note: "each patch drawn with its own pixels (its mean colour in the matrix thumbnails)" }),
  },
  {
    id: "position", label: "position (normalized)", applies: "both",
    fill: (p, put, c) => each(p, put, (i) => {
      const t = p.length[i] > 1 ? p.position[i] / (p.length[i] - 1) : 0;
      return ramp(p.isKey[i] ? c.keyRamp : c.queryRamp, t);
    }),
    legend: (c) => ({ gradients: [["queries", c.queryRamp], ["keys", c.keyRamp]], from: "first", to: "last" }),
  },
  {
    id: "mod5", label: "position mod 5", applies: "text",
    fill: (p, put, c) => each(p, put, (i) => shade(c.mod5[p.position[i] % 5], p.isKey[i] ? 1.35 : 0.8)),
    legend: (c) => ({ swatches: c.mod5.map((rgb, k) => [`position ≡ ${k} (mod 5)`, rgb]), note: kinds }),
  },
  {
    id: "norm", label: "norm", applies: "both", needs: "norms",
    fill: (p, put, c) => sequential(p.norm, p, put, c),
    legend: rangeLegend,
  },
  {
    id: "frequency", label: "token frequency", applies: "text",
    fill: (p, put, c) => sequential(p.frequency, p, put, c, true),
    legend: rangeLegend,
  },
  {
    id: "length", label: "sentence length", applies: "text",
    fill: (p, put, c) => sequential(p.length, p, put, c),
    legend: rangeLegend,
  },
  {
    id: "punct", label: "punctuation", applies: "text",
    fill: (p, put, c) => each(p, put, (i) => shade(isPunctuation(p.text[i]) ? c.punctuation : c.other, p.isKey[i] ? 1.25 : 0.85)),
    legend: (c) => ({ swatches: [["punctuation", c.punctuation], ["other", c.other]], note: kinds }),
  },
];

// The encoding the thumbnails and tiles picture.
export const DEFAULT_ENCODING = ENCODINGS[0].id;

export function encodingsFor(isImage) {
  return ENCODINGS.filter((e) => e.applies === "both" || e.applies === (isImage ? "image" : "text"));
}

export function encoding(id) {
  return ENCODINGS.find((e) => e.id === id) || ENCODINGS[0];
}

// {rgb: packed RGB per point, legend} of one encoding; a "pixels" encoding without its features yet is all grey.
export function colourPoints(id, points, palette, features = null) {
  const enc = encoding(id);
  const out = new Uint8Array(points.n * 3);
  const put = (i, rgb) => out.set(rgb, i * 3);
  if (enc.needs === "pixels" && !features) {
    each(points, put, () => palette.other);
    return { rgb: out, legend: { note: "loading the images…" } };
  }
  return { rgb: out, legend: enc.legend(palette, enc.fill(points, put, palette, features)) };
}
