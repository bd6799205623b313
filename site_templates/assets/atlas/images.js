// Image models (docs/reference/formats.md): the fitted square pictures (images/<image_id>.png) and per-patch
// features computed here from their pixels: mean colour, mean hue, mean brightness and the patch's own pixels.

import { AtlasDataError } from "./data.js";

export function isImageModel(model) {
  return model.manifest.model.input_kind === "image" || !!model.manifest.images;
}

const pair = (v) => (Array.isArray(v) ? [Number(v[0]), Number(v[1])] : [Number(v), Number(v)]);

// rows × cols patches of ph × pw pixels, after `prefix` CLS/register tokens.
export function patchGrid(model) {
  const m = model.manifest.model;
  const [rows, cols] = pair(m.patch_grid || [0, 0]);
  const [ph, pw] = pair(m.patch_size || 0);
  return { rows, cols, ph, pw, prefix: Number(m.num_prefix_tokens || 0) };
}

export function imageInfo(model, imageId) {
  return (model.manifest.images || []).find((im) => im.image_id === imageId) || null;
}

const pictures = new Map();

// {width, height, bitmap, data (RGBA bytes)} of one image, decoded once per page.
export function loadPicture(model, imageId) {
  const info = imageInfo(model, imageId);
  if (!info) return Promise.reject(new AtlasDataError(`manifest.json lists no image ${imageId}`));
  const url = new URL(info.file, model.base).href;
  if (!pictures.has(url)) {
    const promise = decode(url);
    pictures.set(url, promise);
    promise.catch(() => pictures.delete(url));
  }
  return pictures.get(url);
}

async function decode(url) {
  const response = await fetch(url).catch((err) => {
    throw new AtlasDataError(`could not fetch ${url}: ${err.message}`);
  });
  if (!response.ok) throw new AtlasDataError(`could not fetch ${url} (HTTP ${response.status})`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(await response.blob(), { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  } catch (err) {
    throw new AtlasDataError(`${url} is not a readable image: ${err.message}`);
  }
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return { width: bitmap.width, height: bitmap.height, bitmap, data };
}

function hsv(r, g, b) {
  const max = Math.max(r, g, b);
  const c = max - Math.min(r, g, b);
  let h = 0;
  if (c > 0) {
    if (max === r) h = ((g - b) / c + 6) % 6;
    else if (max === g) h = (b - r) / c + 2;
    else h = (r - g) / c + 4;
  }
  return [h / 6, c];
}

// Per token row (model.tokens order): mean RGB, mean hue (chroma-weighted circular mean, 0..1; NaN when grey or
// not a patch), mean brightness (Rec. 601 luma, 0..1; NaN when not a patch), and the patch's pixels on demand.
export function loadPatchFeatures(model) {
  if (!model.patchFeatures) {
    model.patchFeatures = computeFeatures(model);
    model.patchFeatures.catch(() => delete model.patchFeatures);
  }
  return model.patchFeatures;
}

async function computeFeatures(model) {
  const { tokens } = model;
  const grid = patchGrid(model);
  const N = tokens.count;
  const out = {
    grid, meanRgb: new Uint8Array(3 * N), hue: new Float32Array(N).fill(NaN), brightness: new Float32Array(N).fill(NaN),
    pictures: new Map(),
  };
  const ids = [...model.sentences.keys()].filter((sid) => imageInfo(model, sid));
  await Promise.all(ids.map(async (sid) => out.pictures.set(sid, await loadPicture(model, sid))));
  for (let t = 0; t < N; t++) {
    const pic = out.pictures.get(tokens.sentence[t]);
    const [r0, c0] = [tokens.patchRow[t], tokens.patchCol[t]];
    if (!pic || r0 < 0 || c0 < 0) continue;
    let [R, G, B, hx, hy, luma, count] = [0, 0, 0, 0, 0, 0, 0];
    for (let y = r0 * grid.ph; y < (r0 + 1) * grid.ph && y < pic.height; y++) {
      for (let x = c0 * grid.pw; x < (c0 + 1) * grid.pw && x < pic.width; x++) {
        const at = 4 * (y * pic.width + x);
        const [r, g, b] = [pic.data[at], pic.data[at + 1], pic.data[at + 2]];
        const [h, c] = hsv(r, g, b);
        [R, G, B, count] = [R + r, G + g, B + b, count + 1];
        hx += c * Math.cos(2 * Math.PI * h);
        hy += c * Math.sin(2 * Math.PI * h);
        luma += 0.299 * r + 0.587 * g + 0.114 * b;
      }
    }
    if (!count) continue;
    out.meanRgb.set([R / count, G / count, B / count].map(Math.round), 3 * t);
    out.brightness[t] = luma / count / 255;
    if (Math.hypot(hx, hy) / count > 4) out.hue[t] = ((Math.atan2(hy, hx) / (2 * Math.PI)) + 1) % 1;
  }
  return out;
}

// Sprites of every patch token, S × S device pixels each (nearest-neighbour resampling), packed RGBA;
// index[tokenRow] is the sprite of a token, -1 for CLS/register tokens.
export function patchSprites(model, features, S) {
  const { tokens } = model;
  const { grid, pictures } = features;
  const index = new Int32Array(tokens.count).fill(-1);
  const rows = [];
  for (let t = 0; t < tokens.count; t++) {
    if (tokens.patchRow[t] >= 0 && pictures.has(tokens.sentence[t])) index[t] = rows.push(t) - 1;
  }
  const pixels = new Uint32Array(rows.length * S * S);
  rows.forEach((t, k) => {
    const pic = pictures.get(tokens.sentence[t]);
    for (let dy = 0; dy < S; dy++) {
      const y = Math.min(pic.height - 1, tokens.patchRow[t] * grid.ph + Math.floor(((dy + 0.5) * grid.ph) / S));
      for (let dx = 0; dx < S; dx++) {
        const x = Math.min(pic.width - 1, tokens.patchCol[t] * grid.pw + Math.floor(((dx + 0.5) * grid.pw) / S));
        const at = 4 * (y * pic.width + x);
        pixels[k * S * S + dy * S + dx] = (255 << 24) | (pic.data[at + 2] << 16) | (pic.data[at + 1] << 8) | pic.data[at];
      }
    }
  });
  return { size: S, pixels, index };
}
