// The page's colour scheme for what the views draw on canvases: colours come from CSS custom properties
// (mkdocs-material's --md-* and atlas.css's --atlas-*, set per scheme), read at draw time, and views redraw when
// the reader switches the scheme (Material's palette toggle sets data-md-color-scheme on <body>).

const FALLBACK = {
  fg: "#222", bg: "#fff", ring: "#000", attn: "#3b4a6b", flow: "#08306b", label: "rgba(255,255,255,0.85)",
};

// {fg, bg, ring, attn, flow, label} as CSS colours, as they apply to `element` (its scheme and its view's variables).
export function ink(element) {
  const style = getComputedStyle(element || document.body);
  const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    fg: read("--md-default-fg-color", FALLBACK.fg),
    bg: read("--md-default-bg-color", FALLBACK.bg),
    ring: read("--atlas-ring", FALLBACK.ring),
    attn: read("--atlas-attn", FALLBACK.attn),
    flow: read("--atlas-flow", FALLBACK.flow),
    label: read("--atlas-label-bg", FALLBACK.label),
  };
}

export function isDark() {
  return document.body.getAttribute("data-md-color-scheme") === "slate";
}

// Calls fn() whenever the colour scheme changes; returns the function that stops listening.
export function onSchemeChange(fn) {
  const observer = new MutationObserver(() => fn());
  observer.observe(document.body, { attributes: true, attributeFilter: ["data-md-color-scheme"] });
  return () => observer.disconnect();
}
