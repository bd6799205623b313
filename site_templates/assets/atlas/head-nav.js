// Adjacent-head navigation of the head view: prev/next in manifest order, up/down in the same head column.
// Uses the page's own links when it has them (so mkdocs-material's instant navigation handles the click) and
// carries the view state along in the hash.

import { el } from "./dom.js";

const ARROWS = { prev: "←", next: "→", up: "↑", down: "↓" };
const KEYS = { ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up", ArrowDown: "down" };

export class HeadNav {
  constructor({ manifest, layer, head, toolbar, root, hash }) {
    Object.assign(this, { root, hash });
    const heads = manifest.heads;
    const at = heads.findIndex((h) => h.layer === layer && h.head === head);
    const find = (l, h) => heads.find((x) => x.layer === l && x.head === h);
    this.targets = { prev: heads[at - 1], next: heads[at + 1], up: find(layer - 1, head), down: find(layer + 1, head) };
    const page = document.querySelector(".atlas-headnav");
    this.links = {};
    const own = el("nav", { class: "atlas-headnav-own" });
    for (const [dir, target] of Object.entries(this.targets)) {
      if (!target) continue;
      this.links[dir] = (page && page.querySelector(`a.atlas-${dir}`)) || null;
      if (!this.links[dir] && (dir === "prev" || dir === "next" || !page)) {
        this.links[dir] = el("a", { class: `atlas-${dir}`, href: "#", text: `${ARROWS[dir]} L${target.layer} H${target.head}` });
        own.append(this.links[dir], " ");
      }
      if (this.links[dir]) this.links[dir].dataset.target = `../../L${target.layer}/H${target.head}/`;
    }
    if (own.childNodes.length) toolbar.prepend(own);
  }

  update() {
    const hash = this.hash();
    for (const link of Object.values(this.links)) {
      if (link) link.setAttribute("href", link.dataset.target + (hash ? `#${hash}` : ""));
    }
  }

  // The direction an arrow key asks for, if that neighbour exists.
  direction(key) {
    const dir = KEYS[key];
    return dir && this.targets[dir] ? dir : null;
  }

  go(dir) {
    const target = this.targets[dir];
    if (!target) return;
    let link = this.links[dir];
    const temporary = !link;
    if (temporary) {
      const hash = this.hash();
      link = el("a", { href: `../../L${target.layer}/H${target.head}/` + (hash ? `#${hash}` : ""), hidden: true });
      this.root.append(link);
    }
    link.click();
    if (temporary) link.remove();
  }
}
