// Legend and the head's facts panel (label, behaviour scores, normalization, trust). Text via textContent only.

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

function table(title, rows, cls) {
  const entries = Object.entries(rows || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return null;
  const dl = el("dl", { class: cls });
  for (const [name, value] of entries) {
    dl.append(el("dt", { text: name.replace(/_/g, " ") }), el("dd", { text: fmt(value) }));
  }
  return el("section", {}, [el("h4", { text: title }), dl]);
}

export function sidePanel(model, info) {
  const trust = {};
  for (const [layout, scores] of Object.entries(info.trust || {})) {
    for (const [name, value] of Object.entries(scores || {})) trust[`${layout} ${name}`] = value;
  }
  const facts = { "key/value head": info.kv_head };
  return el("aside", { class: "atlas-side" }, [
    el("h3", { class: "atlas-side-title", text: `Layer ${info.layer} · Head ${info.head}` }),
    el("p", { class: "atlas-head-label", text: info.label || "" }),
    table("Behaviour scores", info.metrics, "atlas-metrics"),
    table("Normalization", info.norm, "atlas-norm"),
    table("Trust", trust, "atlas-trust"),
    table("Head", facts, "atlas-facts-list"),
    el("p", { class: "atlas-model-name", text: model.manifest.model.title || model.manifest.model.name }),
  ]);
}
