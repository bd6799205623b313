// Colour encodings of points. Every encoding returns packed RGB per point plus a legend description.

import { normalizeToken } from "./token-text.js";

export const QUERY = [0x1b, 0x9e, 0x77];
export const KEY = [0xe7, 0x29, 0x8a];

export const ENCODINGS = [
  { id: "qk", label: "query / key" },
  { id: "position", label: "position (normalized)" },
  { id: "mod5", label: "position mod 5" },
  { id: "norm", label: "norm" },
  { id: "frequency", label: "token frequency" },
  { id: "length", label: "sentence length" },
  { id: "punct", label: "punctuation" },
];

export const IMAGE_ENCODINGS = [
  { id: "qk", label: "query / key" },
  { id: "patch-row", label: "patch row" },
  { id: "patch-col", label: "patch column" },
  { id: "hue", label: "mean hue" },
  { id: "brightness", label: "mean brightness" },
  { id: "pixels", label: "patch pixels" },
  { id: "position", label: "position (normalized)" },
  { id: "norm", label: "norm" },
];

// Encodings that need the images' pixels (loaded on demand).
export const PIXEL_ENCODINGS = new Set(["hue", "brightness", "pixels"]);

export function encodingsFor(isImage) {
  return isImage ? IMAGE_ENCODINGS : ENCODINGS;
}

const QUERY_RAMP = [[0xc7, 0xe9, 0xc0], [0x41, 0xab, 0x5d], [0x00, 0x44, 0x1b]];
const KEY_RAMP = [[0xfc, 0xc5, 0xe0], [0xdd, 0x34, 0x97], [0x49, 0x00, 0x6a]];
const VIRIDIS = [[0x44, 0x01, 0x54], [0x3b, 0x52, 0x8b], [0x21, 0x91, 0x8c], [0x5e, 0xc9, 0x62], [0xfd, 0xe7, 0x25]];
const MOD5 = [[0x1b, 0x9e, 0x77], [0xd9, 0x5f, 0x02], [0x75, 0x70, 0xb3], [0xe7, 0x29, 0x8a], [0x66, 0xa6, 0x1e]];
const PLASMA = [[0x0d, 0x08, 0x87], [0x7e, 0x03, 0xa8], [0xcc, 0x47, 0x78], [0xf8, 0x95, 0x40], [0xf0, 0xf9, 0x21]];
const GREYS = [[0x18, 0x18, 0x18], [0xe8, 0xe8, 0xe8]];
const HUES = [0, 1, 2, 3, 4, 5, 6].map((k) => hueColour(k / 6));
const PUNCT = [0xe6, 0xab, 0x02];
const OTHER = [0x9e, 0x9e, 0x9e];
const PUNCT_RE = /^[\p{P}\p{S}]+$/u;

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

// Patch encodings; features (from images.js) is needed for hue, brightness and pixels.
function colourPatches(encoding, attrs, features, put) {
  const { n, isKey, patchRow, patchCol, tokenRow } = attrs;
  const none = [["[CLS] / register tokens", OTHER]];
  if (encoding === "patch-row" || encoding === "patch-col") {
    const values = encoding === "patch-row" ? patchRow : patchCol;
    let max = 1;
    for (let i = 0; i < n; i++) max = Math.max(max, values[i]);
    const stops = encoding === "patch-row" ? PLASMA : VIRIDIS;
    for (let i = 0; i < n; i++) put(i, values[i] < 0 ? OTHER : ramp(stops, values[i] / max));
    const [from, to] = encoding === "patch-row" ? ["top row", "bottom row"] : ["left column", "right column"];
    return { gradients: [["", stops]], from, to, swatches: none };
  }
  if (!features) {
    for (let i = 0; i < n; i++) put(i, OTHER);
    return { note: "loading the images…" };
  }
  for (let i = 0; i < n; i++) {
    const t = tokenRow[i];
    if (encoding === "pixels") {
      put(i, patchRow[i] < 0 ? (isKey[i] ? KEY : QUERY) : features.meanRgb.subarray(3 * t, 3 * t + 3));
    } else {
      const v = encoding === "hue" ? features.hue[t] : features.brightness[t];
      put(i, Number.isNaN(v) ? OTHER : encoding === "hue" ? hueColour(v) : ramp(GREYS, v));
    }
  }
  if (encoding === "pixels") return { swatches: [["query frame", QUERY], ["key frame", KEY]], note: "each patch drawn with its own pixels (its mean colour in the matrix thumbnails)" };
  if (encoding === "hue") return { gradients: [["", HUES]], from: "0°", to: "360°", swatches: [["grey / not a patch", OTHER]] };
  return { gradients: [["", GREYS]], from: "dark", to: "bright", swatches: none };
}

// attrs: { n, isKey, position, length, norm, text, frequency, patchRow, patchCol, tokenRow } — per point, in
// drawing order; features: per-token patch features of image models (or null).
export function colourPoints(encoding, attrs, features = null) {
  const { n, isKey } = attrs;
  const out = new Uint8Array(n * 3);
  const put = (i, rgb) => out.set(rgb, i * 3);
  let legend;
  if (encoding.startsWith("patch-") || PIXEL_ENCODINGS.has(encoding)) {
    legend = colourPatches(encoding, attrs, features, put);
  } else if (encoding === "position") {
    for (let i = 0; i < n; i++) {
      const t = attrs.length[i] > 1 ? attrs.position[i] / (attrs.length[i] - 1) : 0;
      put(i, ramp(isKey[i] ? KEY_RAMP : QUERY_RAMP, t));
    }
    legend = { gradients: [["queries", QUERY_RAMP], ["keys", KEY_RAMP]], from: "first", to: "last" };
  } else if (encoding === "mod5") {
    for (let i = 0; i < n; i++) put(i, shade(MOD5[attrs.position[i] % 5], isKey[i] ? 1.35 : 0.8));
    legend = { swatches: MOD5.map((c, k) => [`position ≡ ${k} (mod 5)`, c]), note: "queries darker, keys lighter" };
  } else if (encoding === "norm" || encoding === "frequency" || encoding === "length") {
    const values = encoding === "norm" ? attrs.norm : encoding === "length" ? attrs.length : attrs.frequency;
    const [lo, hi] = extent(encoding === "frequency" ? values.map((v) => Math.log(v)) : values);
    for (let i = 0; i < n; i++) {
      const v = encoding === "frequency" ? Math.log(values[i]) : values[i];
      put(i, ramp(VIRIDIS, (v - lo) / (hi - lo)));
    }
    const shown = encoding === "frequency" ? [Math.exp(lo), Math.exp(hi)] : [lo, hi];
    legend = { gradients: [["", VIRIDIS]], from: formatNumber(shown[0]), to: formatNumber(shown[1]) };
  } else if (encoding === "punct") {
    for (let i = 0; i < n; i++) put(i, shade(isPunctuation(attrs.text[i]) ? PUNCT : OTHER, isKey[i] ? 1.25 : 0.85));
    legend = { swatches: [["punctuation", PUNCT], ["other", OTHER]], note: "queries darker, keys lighter" };
  } else {
    for (let i = 0; i < n; i++) put(i, isKey[i] ? KEY : QUERY);
    legend = { swatches: [["query", QUERY], ["key", KEY]] };
  }
  return { rgb: out, legend };
}

function formatNumber(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}
