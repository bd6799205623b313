// The head view's image-model support (loaded only for image models): the image chooser, patch features for the
// pixel colourings (loaded with the images the first time an encoding needs them), patch sprites, and the image
// view for a selected point with the head's aggregate pattern by patch offset.

import { loadAggregate, loadSentenceAttention } from "./data.js";
import { el, select, showError } from "./dom.js";
import { ImageView } from "./image-view.js";
import { imageInfo, loadPatchFeatures, loadPicture, patchGrid, patchSprites } from "./images.js";

const SPRITE = 9;

// ctx: the head view's context (HeadView.context()).
export class HeadImages {
  constructor(ctx) {
    this.ctx = ctx;
    this.features = null;
    this.pending = null;
    this.sprites = null;
  }

  // "choose an image…" then every image by name; choosing one selects its first token's query point.
  chooser(disposer) {
    const images = this.ctx.model.manifest.images || [];
    const options = [{ id: "", label: "choose an image…" }, ...images.map((im) => ({ id: String(im.image_id), label: im.name }))];
    this.select = select(options, "", "image");
    disposer.on(this.select, "change", () => this.select.value !== "" && this.selectPosition(0, Number(this.select.value), false));
    return this.select;
  }

  syncChooser(id) {
    const point = this.ctx.pointOf(id);
    this.select.value = point ? String(point.sentence) : "";
  }

  mount(root) {
    const { query, key } = this.ctx.palette;
    this.detail = new ImageView(root, { onSelect: (p) => this.selectPosition(p), onClose: () => this.ctx.select(null),
      colours: { query, key } });
    return this.detail.root;
  }

  // Selects the point at a position of an image (default: the current one), keeping query/key unless told.
  selectPosition(position, sid = null, isKey = null) {
    const { model } = this.ctx;
    const current = this.ctx.pointOf(this.ctx.selected());
    const image = sid ?? (current ? current.sentence : null);
    if (image === null) return;
    const kind = isKey ?? (current ? current.isKey : false);
    const target = model.pointAt(image, position, kind) ?? model.pointAt(image, position, false);
    if (target !== null) this.ctx.select(target);
  }

  // Features for the current encoding, or null (not needed, or still loading: the view is drawn again on arrival).
  featuresFor(encoding) {
    if (encoding.needs !== "pixels") return null;
    if (this.features) return this.features;
    const ctx = this.ctx;
    if (!this.pending) {
      this.pending = loadPatchFeatures(ctx.model).then(
        (f) => ctx.alive() && ((this.features = f), ctx.redraw()),
        (err) => ctx.alive() && ctx.showError(err.message),
      );
    }
    return null;
  }

  // Per point (ascending id, the drawing order): the patch's pixels as a SPRITE × SPRITE (CSS px) square framed in
  // its query/key colour.
  sprite(features) {
    const size = Math.round(SPRITE * (window.devicePixelRatio || 1));
    if (!this.sprites || this.sprites.size !== size) {
      const table = patchSprites(this.ctx.model, features, size);
      const index = Int32Array.from(this.ctx.model.points.tokenRow, (t) => table.index[t]);
      this.sprites = { ...table, index, border: Math.max(1, Math.round(size / SPRITE)) };
    }
    return this.sprites;
  }

  // A small picture of the patch under the pointer for the tooltip, or null (not a patch, image still loading).
  preview(id) {
    const { model } = this.ctx;
    const { patchRow, patchCol, sentence } = this.ctx.pointOf(id);
    if (patchRow < 0) return null;
    const picture = (this.pictures ||= new Map()).get(sentence);
    if (!picture) {
      loadPicture(model, sentence).then((p) => this.pictures.set(sentence, p), () => null);
      return null;
    }
    const { ph, pw } = patchGrid(model);
    const canvas = el("canvas", { class: "atlas-tip-patch", width: pw, height: ph });
    canvas.getContext("2d").drawImage(picture.bitmap, patchCol * pw, patchRow * ph, pw, ph, 0, 0, pw, ph);
    return canvas;
  }

  async open(point) {
    const { model, layer, head } = this.ctx;
    const sid = point.sentence;
    let matrix = null;
    let picture = null;
    let aggregate = null;
    try {
      [matrix, picture, aggregate] = await Promise.all([loadSentenceAttention(model, layer, head, sid), loadPicture(model, sid),
        loadAggregate(model, layer, head)]);
    } catch (err) {
      if (this.ctx.alive()) showError(this.detail.root, err.message);
    }
    if (!this.ctx.alive() || this.ctx.selected() !== point.id || !picture) return;
    const tokens = (model.sentences.get(sid) || []).map((t) => model.tokens.text[t]);
    const focus = { position: point.position, isKey: point.isKey };
    this.detail.show({ imageId: sid, image: imageInfo(model, sid), picture, grid: patchGrid(model), tokens, matrix, focus });
    if (aggregate) this.detail.showAggregate(aggregate);
  }

  hide() {
    this.detail.hide();
  }

  destroy() {
    this.detail.destroy();
  }
}
