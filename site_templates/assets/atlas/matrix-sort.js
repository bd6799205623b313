// The matrix view's sort choices: layer and head, then every behaviour score the heads have, both ways. With
// manifest.json's score registry (`scores`: name, label, doc) in its order, labels and tooltips; without it (older
// sites) by name.
const LAYOUT_PREFIX = "layout.";
const FAITHFULNESS = [
  ["query_rank_corr", "how well distance from a query ranks its keys as attention does, in the layout shown (1 = exactly)"],
  ["nearest_key_share", "attention on the key nearest each query in the layout shown ÷ the row's top attention"],
];

export function sortOptions(manifest) {
  const present = new Set(manifest.heads.flatMap((h) => Object.keys(h.metrics || {})));
  const plain = (name) => name.replace(/_/g, " ");
  let scores = [...present].sort().map((name) => ({ name, label: plain(name), title: null }));
  if (Array.isArray(manifest.scores)) {
    scores = [];
    for (const sc of manifest.scores) {
      if (!sc || !present.delete(sc.name)) continue; // no head has it, or it is listed twice
      scores.push({ name: sc.name, label: sc.label ? String(sc.label) : plain(sc.name), title: sc.doc ? String(sc.doc) : null });
    }
  }
  // Faithfulness of the layout shown (manifest.json's per-head `faithfulness`), sortable like the scores.
  const measured = new Set(manifest.heads.flatMap((h) => Object.values(h.faithfulness || {}).flatMap((t) => Object.keys(t))));
  for (const [name, title] of FAITHFULNESS) {
    if (measured.has(name)) scores.push({ name: `${LAYOUT_PREFIX}${name}`, label: `${plain(name)} (this layout)`, title });
  }
  const out = [{ id: "order", label: "layer, head" }];
  for (const { name, label, title } of scores) {
    out.push({ id: `${name}:desc`, label: `${label} ↓`, title }, { id: `${name}:asc`, label: `${label} ↑`, title });
  }
  return out;
}

// Whether a sort choice depends on the layout shown (the faithfulness measures).
export function perLayout(sort) {
  return sort.startsWith(LAYOUT_PREFIX);
}

// The value a head is sorted by (`info`: its manifest.json summary), or undefined when it has none.
export function sortValue(info, sort, layout) {
  const metric = sort.split(":")[0];
  return perLayout(metric)
    ? ((info.faithfulness || {})[layout] || {})[metric.slice(LAYOUT_PREFIX.length)]
    : (info.metrics || {})[metric];
}

// `items` in the order of sort choice `sort` ("order": as given); heads without a value go last.
export function sorted(items, infoOf, sort, layout) {
  const out = [...items];
  if (sort === "order") return out;
  const dir = sort.split(":")[1];
  const value = (item) => sortValue(infoOf(item), sort, layout);
  return out.sort((a, b) => {
    const [x, y] = [value(a), value(b)];
    if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
    return dir === "asc" ? x - y : y - x;
  });
}
