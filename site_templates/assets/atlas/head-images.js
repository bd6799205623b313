// The head view's image-model support (loaded only for image models): the image chooser, patch features for the
// pixel colourings (loaded with the images the first time an encoding needs them), patch sprites, and the image
// view for a selected point with the head's aggregate pattern by patch offset.

import { PIXEL_ENCODINGS } from "./colours.js";
import { loadAggregate, loadAttention } from "./data.js";
import { el, select, showError } from "./dom.js";
import { ImageView } from "./image-view.js";
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
    this.select = select(options, "", "image");
    disposer.on(this.select, "change", () => this.select.value !== "" && this.selectPosition(0, Number(this.select.value), false));
    return this.select;
  }

  syncChooser(row) {
    this.select.value = row >= 0 ? String(this.view.attrs.sentence[row]) : "";
  }

  mount(root) {
    this.detail = new ImageView(root, { onSelect: (p) => this.selectPosition(p), onClose: () => this.view.select(null) });
    return this.detail.root;
  }

  // Selects the point at a position of an image (default: the current one), keeping query/key unless told.
  selectPosition(position, sid = null, isKey = null) {
    const v = this.view;
    const row = v.state.point !== null ? v.rowOfPoint(v.state.point) : -1;
    const image = sid ?? (row >= 0 ? v.attrs.sentence[row] : null);
    if (image === null) return;
    const kind = isKey ?? (row >= 0 ? !!v.attrs.isKey[row] : false);
    const target = v.rowOf.get(`${image}:${position}:${kind ? 1 : 0}`) ?? v.rowOf.get(`${image}:${position}:0`);
    if (target !== undefined) v.select(v.attrs.pointId[target]);
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
    let aggregate = null;
    try {
      [attn, picture, aggregate] = await Promise.all([loadAttention(v.model, v.layer, v.head), loadPicture(v.model, sid),
        loadAggregate(v.model, v.layer, v.head)]);
    } catch (err) {
      if (!v.destroyed) showError(this.detail.root, err.message);
    }
    if (v.destroyed || v.state.point !== a.pointId[row] || !picture) return;
    const matrix = attn ? attn.matrix(sid) : null;
    const tokens = (v.model.sentences.get(sid) || []).map((t) => v.model.tokens.text[t]);
    const focus = { position: a.position[row], isKey: !!a.isKey[row] };
    this.detail.show({ imageId: sid, image: imageInfo(v.model, sid), picture, grid: patchGrid(v.model), tokens, matrix, focus });
    if (aggregate) this.detail.showAggregate(aggregate);
  }

  hide() {
    this.detail.hide();
  }

  destroy() {
    this.detail.destroy();
  }
}
