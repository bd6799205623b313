// The head view's image-model support: the image chooser, patch features for the pixel colourings (loaded with
// the images the first time an encoding needs them), patch sprites, and opening the image view for a point.

import { PIXEL_ENCODINGS } from "./colours.js";
import { loadAttention } from "./data.js";
import { el, select, showError } from "./dom.js";
import { imageInfo, loadPatchFeatures, loadPicture, patchGrid, patchSprites } from "./images.js";

const SPRITE = 9;

export class HeadImages {
  constructor(view) {
    this.view = view;
    this.features = null;
    this.pending = null;
    this.sprites = null;
  }

  // "choose an image…" then every image by name; choosing one selects its first token's query point.
  chooser(disposer) {
    const images = this.view.model.manifest.images || [];
    const options = [{ id: "", label: "choose an image…" }, ...images.map((im) => ({ id: String(im.image_id), label: im.name }))];
    const node = select(options, "", "image");
    disposer.on(node, "change", () => node.value !== "" && this.view.selectPosition(0, Number(node.value), false));
    return node;
  }

  // Features for the current encoding, or null (not needed, or still loading: the view is applied again on arrival).
  featuresFor(encoding) {
    if (!PIXEL_ENCODINGS.has(encoding)) return null;
    if (this.features) return this.features;
    const v = this.view;
    if (!this.pending) {
      this.pending = loadPatchFeatures(v.model).then(
        (f) => !v.destroyed && ((this.features = f), v.apply()),
        (err) => !v.destroyed && showError(v.root, err.message),
      );
    }
    return null;
  }

  // Per head row: the patch's pixels as a SPRITE × SPRITE (CSS px) square framed in its query/key colour.
  sprite(features) {
    const size = Math.round(SPRITE * (window.devicePixelRatio || 1));
    if (!this.sprites || this.sprites.size !== size) {
      const table = patchSprites(this.view.model, features, size);
      const index = Int32Array.from(this.view.attrs.tokenRow, (t) => table.index[t]);
      this.sprites = { ...table, index, border: Math.max(1, Math.round(size / SPRITE)) };
    }
    return this.sprites;
  }

  // A small picture of the patch under the pointer for the tooltip, or null (not a patch, image still loading).
  preview(row) {
    const v = this.view;
    const { patchRow, patchCol, sentence } = v.attrs;
    if (patchRow[row] < 0) return null;
    const picture = (this.pictures ||= new Map()).get(sentence[row]);
    if (!picture) {
      loadPicture(v.model, sentence[row]).then((p) => this.pictures.set(sentence[row], p), () => null);
      return null;
    }
    const { ph, pw } = patchGrid(v.model);
    const canvas = el("canvas", { class: "atlas-tip-patch", width: pw, height: ph });
    canvas.getContext("2d").drawImage(picture.bitmap, patchCol[row] * pw, patchRow[row] * ph, pw, ph, 0, 0, pw, ph);
    return canvas;
  }

  async open(row) {
    const v = this.view;
    const a = v.attrs;
    const sid = a.sentence[row];
    let attn = null;
    let picture = null;
    try {
      [attn, picture] = await Promise.all([loadAttention(v.model, v.info), loadPicture(v.model, sid)]);
    } catch (err) {
      if (!v.destroyed) showError(v.detail.root, err.message);
    }
    if (v.destroyed || v.state.point !== a.pointId[row] || !picture) return;
    const matrix = attn ? attn.matrix(sid) : null;
    const tokens = (v.model.sentences.get(sid) || []).map((t) => v.model.tokens.text[t]);
    const focus = { position: a.position[row], isKey: !!a.isKey[row] };
    v.detail.show({ imageId: sid, image: imageInfo(v.model, sid), picture, grid: patchGrid(v.model), tokens, matrix, focus });
    v.overlay.lines = matrix ? v.topLines(sid, matrix) : [];
    v.scatter.schedule();
  }
}
