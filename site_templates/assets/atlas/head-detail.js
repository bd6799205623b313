// What the head view shows for a selected point: the attention lines of its sentence (each query's strongest keys
// in the head's attention rows) and the sentence view (text: BertViz lines from the same rows, plus the head's
// aggregate pattern) or the image view (image models, through head-images.js), with the neuron view of featured
// sentences and a link to the sentence's model view, and the value view with its flow panel (value-view.js) when the
// build has values.
// The full rows load only when a point is selected.
// It sees the head view only through the context of HeadView.context().

import { loadAggregate, loadSentenceAttention, strongest } from "./data.js";
import { showError } from "./dom.js";
import { modelViewUrl } from "./inputs-data.js";
import { NeuronView } from "./neuron-view.js";
import { SentenceView } from "./sentence-view.js";
import { ValueView } from "./value-view.js";

// Attention lines drawn per query token of the selected sentence.
export const TOP_K = 2;

export class HeadDetail {
  // images: the head-images.js module for image models (loaded by the view), or null.
  constructor(ctx, images = null) {
    this.ctx = ctx;
    this.images = images ? new images.HeadImages(ctx) : null;
    this.shownFor = null;
    this.values = ctx.model.manifest.values ? new ValueView(ctx) : null;
    ctx.onChange((id) => this.update(id));
  }

  chooser(disposer) {
    return this.images ? this.images.chooser(disposer) : null;
  }

  mount(root) {
    if (this.images) {
      this.root = this.images.mount(root);
      return;
    }
    this.sentence = new SentenceView(root);
    this.sentence.onClose = () => this.ctx.select(null);
    this.root = this.sentence.root;
    this.neuron = new NeuronView(this.sentence.root, { onPick: (sid) => this.pickSentence(sid) });
    this.sentence.onPair = (q, k) => this.neuron.setPair(q, k);
  }

  mountValues(root) {
    if (this.values) this.values.mount(root);
  }

  // Selects a sentence's first non-special token (its query point) in the head view.
  pickSentence(sid) {
    const { model } = this.ctx;
    const rows = model.sentences.get(sid) || [];
    const row = rows.find((r) => !model.tokens.special[r]) ?? rows[0];
    const point = row === undefined ? null : model.pointOfToken(row, false);
    if (point !== null) this.ctx.select(point);
  }

  // Patch features when the encoding needs the images' pixels (image models), else null.
  featuresFor(encoding) {
    return this.images ? this.images.featuresFor(encoding) : null;
  }

  sprite(features) {
    return this.images.sprite(features);
  }

  preview(pointId) {
    return this.images ? this.images.preview(pointId) : null;
  }

  // Opens, keeps or closes the detail for the selected point id (null: none).
  update(id) {
    if (this.images) this.images.syncChooser(id);
    if (this.values && this.values.colour !== this.ctx.colour()) this.values.refresh();
    if (id === this.shownFor) return;
    this.shownFor = id;
    if (this.values) this.values.update(id === null ? null : this.ctx.pointOf(id));
    if (id === null) {
      (this.images || this.sentence).hide();
      if (this.neuron) this.neuron.hide();
      return;
    }
    const point = this.ctx.pointOf(id);
    this.lines(point);
    if (this.images) this.images.open(point);
    else this.openSentence(point);
  }

  // Top-k lines of every query of the selected point's sentence, to the key points of their targets (the rows are
  // the ones the sentence view loads too, so selecting a point costs one file).
  async lines(point) {
    const { model, layer, head } = this.ctx;
    const sid = point.sentence;
    let m;
    try {
      m = await loadSentenceAttention(model, layer, head, sid);
    } catch (err) {
      if (this.ctx.alive()) showError(this.root, err.message);
      return;
    }
    if (!this.ctx.alive() || this.shownFor !== point.id) return;
    const lines = [];
    for (const t of (m && model.sentences.get(sid)) || []) {
      const from = model.pointOfToken(t, false);
      const row = model.tokens.position[t];
      if (from === null || row >= m.n) continue;
      for (const { position, weight } of strongest(m.w, m.n, row, TOP_K)) {
        const to = model.pointAt(sid, position, true);
        if (to !== null) lines.push({ from, to, weight });
      }
    }
    this.ctx.setLines(lines);
  }

  async openSentence(point) {
    const { model, layer, head } = this.ctx;
    const sid = point.sentence;
    const tt = model.tokens;
    const tokens = (model.sentences.get(sid) || []).map((t) => ({ text: tt.text[t], special: !!tt.special[t], position: tt.position[t],
      side: tt.side ? tt.side[t] : null }));
    let matrix = null;
    let aggregate = null;
    try {
      [matrix, aggregate] = await Promise.all([loadSentenceAttention(model, layer, head, sid), loadAggregate(model, layer, head)]);
    } catch (err) {
      if (this.ctx.alive()) showError(this.root, err.message);
    }
    if (!this.ctx.alive() || this.shownFor !== point.id) return;
    const focus = { position: point.position, isKey: point.isKey };
    const m = model.manifest.model;
    const sides = tt.side ? [m.query_side || "query side", m.key_side || "key side"] : null;
    this.sentence.show({ sentenceId: sid, tokens, matrix, focus, sides, modelView: model.manifest.inputs ? modelViewUrl(model, sid) : null });
    if (aggregate) this.sentence.showAggregate(aggregate);
    if (!model.manifest.inputs) return;
    try {
      await this.neuron.show({ model, layer, head, inputId: sid, tokens, focus, matrix });
    } catch (err) {
      if (this.ctx.alive()) showError(this.neuron.root, err.message);
    }
  }

  destroy() {
    if (this.values) this.values.destroy();
    if (this.images) this.images.destroy();
    if (this.neuron) this.neuron.destroy();
    if (this.sentence) this.sentence.destroy();
  }
}
