"""The HTML of the batch report: one self-contained page (inline CSS and JavaScript, no
network, no build step) that works from `file://`.

Everything that comes from the batch (prompts, names, error texts, paths) is user data. The
header is rendered here with `html.escape`; the cards are rendered by the page's script from one
JSON blob in `<script type="application/json">` (with `<`, `>`, `&` and U+2028/9 escaped, so no
string can close the element), and set with `textContent`, never parsed as HTML. The script
renders `REPORT_CARDS_PER_CHUNK` cards at load and the next as the reader scrolls: a
10,000-item page costs its JSON parse, not 10,000 cards, before DOMContentLoaded.
"""

from __future__ import annotations

import html
import json
from typing import Any, Final

from ... import _constants as C
from .assets import SCRIPT, STYLE

__all__ = ["STATUSES", "embed_json", "render"]

# In the order the filter lists them.
STATUSES: Final = ("succeeded", "failed", "cancelled", "unknown", "error")
_MEANING: Final = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "unknown": "outcome unknown (re-run to follow)",
    "error": "errors (not sent / not saved)",
}
_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def embed_json(value: Any) -> str:
    """`value` as JSON that is safe inside a `<script>` element: no `</script>` or `<!--` can
    appear, and the characters JavaScript once treated as line ends are escaped. These
    characters only occur inside JSON strings, where the escapes mean the same characters."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_ESCAPES)


def render(page: dict[str, Any]) -> str:
    """The page for `page` (`{"summary": ..., "items": [...]}`, see `_report._page_data`)."""
    summary = page["summary"]
    counts: dict[str, int] = summary["counts"]
    data = {"chunk": C.REPORT_CARDS_PER_CHUNK, "items": page["items"]}
    esc = html.escape
    facts = [(_MEANING.get(status, status), str(n)) for status, n in counts.items()]
    facts.append(("total", str(summary["total"])))
    wall, rate = summary.get("wall_seconds"), summary.get("items_per_second")
    facts.append(("wall time (last run)", "-" if wall is None else f"{wall:.1f} s"))
    facts.append(("rate (last run)", "-" if rate is None else f"{rate:.1f} items/s"))
    facts.append(("estimated cost", _money(summary.get("estimated_cost"))))
    cost = _money(summary.get("cost"))
    if summary.get("cost_unknown"):
        cost += f" ({summary['cost_unknown']} unknown)"
    facts.append(("actual cost (history)", cost))
    summary_html = "".join(
        f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>" for name, value in facts
    )
    filters = "".join(
        f'<label class="st-{esc(status)}"><input type="checkbox" value="{esc(status)}" '
        f'checked> {esc(status)} <span class="n">{n}</span></label>'
        for status, n in counts.items()
        if n or status in STATUSES[:1]
    )
    stopped = summary.get("stopped")
    note = f'<p class="stopped">stopped early: {esc(str(stopped))}</p>' if stopped else ""
    return _TEMPLATE.format(
        title=esc(summary["out"]),
        summary=summary_html,
        built=esc(summary["built"]),
        note=note,
        filters=filters,
        style=STYLE,
        script=SCRIPT,
        data=embed_json(data),
    )


def _money(amount: Any) -> str:
    return "unknown" if amount is None else f"${amount}"


# {data} is already safe inside <script> (embed_json); every other field is escaped above.
_TEMPLATE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>oxedit report: {title}</title>
<style>{style}</style>
</head>
<body>
<header class="top">
<h1>oxedit batch <span class="where">{title}</span></h1>
<dl class="summary">{summary}</dl>
{note}
<div class="controls">
<fieldset id="filters"><legend>status</legend>{filters}</fieldset>
<input id="search" type="search" placeholder="search prompt, name or id" aria-label="search">
<span id="shown" aria-live="polite"></span>
</div>
<p class="built">built {built} by oxedit report</p>
</header>
<main id="grid"></main>
<div id="more"><button type="button">show more</button></div>
<noscript><p>The cards need JavaScript; report.json lists every item.</p></noscript>
<script type="application/json" id="oxedit-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
