// What the head view shows for a selected point: the attention lines of its sentence (from the head's small top-k
// file) and the sentence view (text: BertViz lines from the full attention rows, plus the head's aggregate pattern)
// or the image view (image models, through head-images.js). The full rows load only when a point is selected.

import { loadAggregate, loadAttention, loadTopK } from "./data.js";
import { showError } from "./dom.js";
import { SentenceView } from "./sentence-view.js";

export class HeadDetail {
  // images: the head-images.js module for image models (loaded by the view), or null.
  constructor(view, images = null) {
    this.view = view;
    this.images = images ? new images.HeadImages(view) : null;
    this.shownFor = null;
  }

  chooser(disposer) {
    return this.images ? this.images.chooser(disposer) : null;
  }

  mount(root) {
    const v = this.view;
    if (this.images) {
      this.root = this.images.mount(root);
      return;
    }
    this.sentence = new SentenceView(root);
    this.sentence.onClose = () => v.select(null);
    this.root = this.sentence.root;
  }

  featuresFor(encoding) {
    return this.images ? this.images.featuresFor(encoding) : null;
  }

  sprite(features) {
    return this.images.sprite(features);
  }

  preview(row) {
    return this.images ? this.images.preview(row) : null;
  }

  // Called on every apply(): opens, keeps or closes the detail for the selected row (-1: none).
  update(row) {
    const v = this.view;
    const pid = row >= 0 ? v.attrs.pointId[row] : null;
    if (this.images) this.images.syncChooser(row);
    if (pid === this.shownFor) return;
    this.shownFor = pid;
    if (row < 0) {
      (this.images || this.sentence).hide();
      return;
    }
    this.lines(row);
    if (this.images) this.images.open(row);
    else this.openSentence(row);
  }

  // Top-k lines of every query of the selected point's sentence, to the key points of their targets.
  async lines(row) {
    const v = this.view;
    const a = v.attrs;
    const sid = a.sentence[row];
    let topk;
    try {
      topk = await loadTopK(v.model, v.layer, v.head);
    } catch (err) {
      if (!v.destroyed) showError(this.root, err.message);
      return;
    }
    if (v.destroyed || this.shownFor !== a.pointId[row]) return;
    const { tokens } = v.model;
    const lines = [];
    for (const t of v.model.sentences.get(sid) || []) {
      const from = v.rowOf.get(`${sid}:${tokens.position[t]}:0`);
      if (from === undefined) continue;
      for (const { position, weight } of topk.targets(tokens.id[t])) {
        const to = v.rowOf.get(`${sid}:${position}:1`);
        if (to !== undefined) lines.push({ from, to, weight });
      }
    }
    v.setLines(lines);
  }

  async openSentence(row) {
    const v = this.view;
    const a = v.attrs;
    const sid = a.sentence[row];
    const { tokens: tt } = v.model;
    const tokens = (v.model.sentences.get(sid) || []).map((t) => ({ text: tt.text[t], special: !!tt.special[t], position: tt.position[t] }));
    let attn = null;
    let aggregate = null;
    try {
      [attn, aggregate] = await Promise.all([loadAttention(v.model, v.layer, v.head), loadAggregate(v.model, v.layer, v.head)]);
    } catch (err) {
      if (!v.destroyed) showError(this.root, err.message);
    }
    if (v.destroyed || this.shownFor !== a.pointId[row]) return;
    const matrix = attn ? attn.matrix(sid) : null;
    this.sentence.show({ sentenceId: sid, tokens, matrix, focus: { position: a.position[row], isKey: !!a.isKey[row] } });
    if (aggregate) this.sentence.showAggregate(aggregate);
  }

  destroy() {
    if (this.images) this.images.destroy();
    if (this.sentence) this.sentence.destroy();
  }
}
