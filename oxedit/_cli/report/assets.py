"""The stylesheet and the script of the batch report page (inlined: the page is one file).

The script reads the cards' data from the page's JSON blob and builds every card with
`createElement` and `textContent` (no `innerHTML`: prompts and errors are user data). It shows
the cards that pass the status filter and the search, a chunk at a time as the reader scrolls.
A thumbnail that does not load (an input URL that is not reachable, a file moved away) is
replaced by a placeholder by its `error` handler.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCRIPT", "STYLE"]

STYLE: Final = """
:root { color-scheme: light dark; --bg: #f6f6f4; --card: #fff; --ink: #1d1d1f; --dim: #6b6b70;
  --line: #dcdcd8; --ok: #1f883d; --bad: #cf222e; --warn: #9a6700; --info: #0969da; }
@media (prefers-color-scheme: dark) { :root { --bg: #16171a; --card: #1f2125; --ink: #e6e6e6;
  --dim: #9a9aa2; --line: #34363c; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--ink); }
header.top { padding: 16px 20px 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 10px; }
h1 .where { font-weight: 400; color: var(--dim); font-size: 14px; margin-left: 8px;
  overflow-wrap: anywhere; }
dl.summary { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 0 0 10px; }
dl.summary div { display: flex; flex-direction: column; }
dl.summary dt { color: var(--dim); font-size: 12px; }
dl.summary dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.stopped { color: var(--warn); margin: 4px 0 10px; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 16px; }
fieldset { border: 0; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 4px 12px; }
legend { float: left; color: var(--dim); margin-right: 8px; }
fieldset label { cursor: pointer; white-space: nowrap; }
fieldset .n { color: var(--dim); }
#search { min-width: 260px; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); color: var(--ink); font: inherit; }
#shown, .built { color: var(--dim); font-size: 12px; }
.built { margin: 8px 0 0; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px;
  padding: 16px 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--dim);
  border-radius: 8px; padding: 10px 12px; min-width: 0; }
.card.st-succeeded { border-left-color: var(--ok); }
.card.st-failed, .card.st-error { border-left-color: var(--bad); }
.card.st-cancelled { border-left-color: var(--warn); }
.card.st-unknown { border-left-color: var(--info); }
.card header { display: flex; justify-content: space-between; gap: 8px; align-items: baseline; }
.card .name { font-weight: 600; overflow-wrap: anywhere; }
.badge { font-size: 12px; padding: 1px 8px; border-radius: 10px; color: #fff;
  background: var(--dim); white-space: nowrap; }
.st-succeeded .badge { background: var(--ok); } .st-failed .badge, .st-error .badge {
  background: var(--bad); } .st-cancelled .badge { background: var(--warn); }
.st-unknown .badge { background: var(--info); }
.pics { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
figure { margin: 0; }
figcaption { font-size: 11px; color: var(--dim); }
figure img, .ph { display: block; width: 160px; height: 160px; object-fit: contain;
  border-radius: 4px; background: var(--bg); }
.ph { display: flex; align-items: center; justify-content: center; text-align: center;
  color: var(--dim); font-size: 12px; padding: 8px; border: 1px dashed var(--line); }
.prompt { margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: 0 10px; margin: 6px 0 0;
  font-size: 12px; }
.card dt { color: var(--dim); } .card dd { margin: 0; overflow-wrap: anywhere; }
.error { color: var(--bad); margin: 6px 0 0; font-size: 12px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
#more { text-align: center; padding: 0 0 24px; }
#more button { font: inherit; padding: 6px 14px; }
"""

SCRIPT: Final = """
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("oxedit-data").textContent);
  const items = data.items, chunk = data.chunk;
  const grid = document.getElementById("grid"), more = document.getElementById("more");
  const shown = document.getElementById("shown"), search = document.getElementById("search");
  const boxes = Array.from(document.querySelectorAll("#filters input"));
  let list = items, next = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function picture(img, label) {
    const fig = el("figure");
    fig.appendChild(el("figcaption", null, label));
    if (!img.t) { fig.appendChild(el("div", "ph", img.x || "no image")); return fig; }
    const link = el("a");
    link.href = img.h || img.t; link.target = "_blank"; link.rel = "noopener";
    const pic = el("img");
    pic.loading = "lazy"; pic.decoding = "async"; pic.alt = label;
    pic.addEventListener("error", () => {
      link.replaceWith(el("div", "ph", img.w ? "URL not reachable" : "image not readable"));
    }, { once: true });
    pic.src = img.t;
    link.appendChild(pic); fig.appendChild(link);
    return fig;
  }
  function fact(dl, name, value) {
    dl.appendChild(el("dt", null, name)); dl.appendChild(el("dd", null, value));
  }
  function card(it) {
    const box = el("article", "card st-" + it.s);
    box.dataset.status = it.s;
    const head = el("header");
    head.appendChild(el("span", "name", it.n)); head.appendChild(el("span", "badge", it.s));
    box.appendChild(head);
    const pics = el("div", "pics");
    pics.appendChild(picture(it.in, "input"));
    it.out.forEach((o, k) => {
      pics.appendChild(picture(o, it.out.length > 1 ? "output " + (k + 1) : "output"));
    });
    box.appendChild(pics);
    box.appendChild(el("p", "prompt", it.p));
    const dl = el("dl");
    if (it.i !== null) fact(dl, "item", String(it.i));
    fact(dl, "input", it.src || "-");
    fact(dl, "model", it.m);
    if (it.a) fact(dl, "params", it.a);
    if (it.g.length) fact(dl, it.g.length > 1 ? "generations" : "generation", it.g.join(", "));
    if (it.t !== null) fact(dl, "time", it.t.toFixed(1) + " s");
    if (it.c !== null) fact(dl, "cost", "$" + it.c);
    if (it.r) fact(dl, "run", "finished by an earlier run");
    box.appendChild(dl);
    if (it.e) box.appendChild(el("p", "error", it.e));
    return box;
  }
  function render() {
    const end = Math.min(next + chunk, list.length), part = document.createDocumentFragment();
    for (; next < end; next++) part.appendChild(card(list[next]));
    grid.appendChild(part);
    more.hidden = next >= list.length;
  }
  function key(it) {
    if (it.k === undefined) it.k = [it.n, it.p, it.src, it.g.join(" ")].join("\\n").toLowerCase();
    return it.k;
  }
  function apply() {
    const on = new Set(boxes.filter(b => b.checked).map(b => b.value));
    const q = search.value.trim().toLowerCase();
    list = items.filter(it => on.has(it.s) && (!q || key(it).includes(q)));
    grid.replaceChildren(); next = 0; render();
    shown.textContent = list.length + " of " + items.length + " shown";
    if (watcher) { watcher.unobserve(more); watcher.observe(more); }
  }
  // The next chunk when the end of the grid comes near; re-observed after each chunk, so a
  // sentinel still in view after one chunk asks for the next.
  const watcher = "IntersectionObserver" in window ? new IntersectionObserver(seen => {
    if (seen.some(s => s.isIntersecting) && next < list.length) {
      render(); watcher.unobserve(more); watcher.observe(more);
    }
  }, { rootMargin: "600px" }) : null;
  more.querySelector("button").addEventListener("click", render);
  boxes.forEach(b => b.addEventListener("change", apply));
  search.addEventListener("input", apply);
  apply();
})();
"""
