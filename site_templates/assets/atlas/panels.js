// Legend and the head's facts panel (label, related heads, behaviour scores, normalization, trust, high-dim). Text via
// textContent only.

import { hex } from "./colours.js";
import { el, fmt } from "./dom.js";

export function legendElement(legend) {
  const box = el("div", { class: "atlas-legend-items" });
  for (const [label, rgb] of legend.swatches || []) {
    box.append(el("span", { class: "atlas-legend-item" }, [swatch(`background:${hex(rgb)}`), label]));
  }
  for (const [label, stops] of legend.gradients || []) {
    const css = `background:linear-gradient(to right, ${stops.map(hex).join(", ")})`;
    box.append(el("span", { class: "atlas-legend-item" }, [label ? `${label} ` : "", legend.from, " ", swatch(css, "atlas-ramp"), " ", legend.to]));
  }
  if (legend.note) box.append(el("span", { class: "atlas-legend-note", text: legend.note }));
  return box;
}

function swatch(style, cls = "atlas-swatch") {
  const s = el("span", { class: cls });
  s.setAttribute("style", style);
  return s;
}

// {a: 1, b: {c: 2}} → {a: 1, "b c": 2}: nested records (trust per layout, vision scores) as one table.
function flatten(rows, prefix = "", out = {}) {
  for (const [name, value] of Object.entries(rows || {})) {
    const key = prefix ? `${prefix} ${name}` : name;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, key, out);
    else if (typeof value === "number" || typeof value === "string") out[key] = value;
  }
  return out;
}

function table(title, rows, cls) {
  const entries = Object.entries(flatten(rows)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!entries.length) return null;
  const dl = el("dl", { class: cls });
  for (const [name, value] of entries) {
    dl.append(el("dt", { text: name.replace(/_/g, " ") }), el("dd", { text: fmt(value) }));
  }
  return el("section", {}, [el("h4", { text: title }), dl]);
}

// Up to five heads whose attention behaves most alike (`related` of the head's file), as links to their pages.
function relatedHeads(model, info) {
  const items = [];
  for (const r of Array.isArray(info.related) ? info.related : []) {
    const [layer, head, similarity] = [Number(r && r.layer), Number(r && r.head), Number(r && r.similarity)];
    const target = Number.isInteger(layer) && Number.isInteger(head) ? model.headInfo(layer, head) : null;
    if (!target) continue;
    const link = el("a", { class: "atlas-related-link", href: `../../L${layer}/H${head}/`, text: `L${layer} H${head}` });
    link.dataset.layer = String(layer);
    link.dataset.head = String(head);
    const detail = [target.label || "", Number.isFinite(similarity) ? `similarity ${similarity.toFixed(2)}` : ""].filter(Boolean);
    items.push(el("li", {}, [link, detail.length ? el("span", { class: "atlas-related-detail", text: ` · ${detail.join(" · ")}` }) : null]));
  }
  if (!items.length) return null;
  return el("section", { class: "atlas-related" }, [el("h4", { text: "Related heads" }), el("ul", {}, items)]);
}

export function sidePanel(model, info) {
  const facts = { "key/value head": info.kv_head };
  return el("aside", { class: "atlas-side" }, [
    el("h3", { class: "atlas-side-title", text: `Layer ${info.layer} · Head ${info.head}` }),
    el("p", { class: "atlas-head-label", text: info.label || "" }),
    relatedHeads(model, info),
    table("Behaviour scores", info.metrics, "atlas-metrics"),
    table("Normalization", info.norm, "atlas-norm"),
    table("Trust", info.trust, "atlas-trust"),
    table("High-dimensional faithfulness", info.highdim, "atlas-highdim"),
    table("Vision", info.vision, "atlas-vision"),
    table("Head", facts, "atlas-facts-list"),
    el("p", { class: "atlas-model-name", text: model.manifest.model.title || model.manifest.model.name }),
  ]);
}
