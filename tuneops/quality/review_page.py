"""The data-quality review page: one self-contained HTML file a person reads before training, offline too.

GX Data Docs load their styles, scripts and status icons from CDNs, so offline they are unstyled and their
Status column is blank. This page needs nothing but itself: inline CSS, results as words and marks
(PASS/FAIL/WARN with ✓/✗/⚠, readable without colour and in print), label shares as inline SVG bars, and the
example rows GX kept for each failed check. `render` is pure; tasks/validate.py writes the page.
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING

from tuneops.config.records import QualityRecord
from tuneops.quality import suites as quality

if TYPE_CHECKING:
    import pandas as pd

MAX_EXAMPLE_CHARS = 300  # a too-long text is itself the finding: its first lines are enough to recognise it
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FLAGGED = re.compile(f"({quality.MOJIBAKE})")  # a group, so re.split keeps the flagged characters

CSS = """
body{font:14px/1.45 "DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px auto;
  max-width:1100px;padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:2px solid #d0d7de}
.meta{color:#57606a;margin:0 0 8px}
.banner{padding:10px 14px;border:1px solid;border-radius:6px;font-weight:600;margin:12px 0}
.banner.fail{background:#ffebe9;border-color:#cf222e;color:#82071e}
.banner.warn{background:#fff8c5;border-color:#bf8700;color:#6b4a00}
.banner.pass{background:#dafbe1;border-color:#1a7f37;color:#116329}
.failures{margin:0 0 8px;padding-left:22px}
.failures a{color:inherit}
.split{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.split table{flex:1 1 560px}
table{border-collapse:collapse;margin:4px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d8dee4;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.mark{font-weight:700;white-space:nowrap}
tr.pass td.mark{color:#1a7f37}
tr.fail td.mark{color:#cf222e}
tr.warn td.mark{color:#9a6700}
tr.fail,tr.fail+tr.examples{background:#fff5f5}
tr.warn,tr.warn+tr.examples{background:#fffbea}
td.value{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:13px}
tr.examples td{padding:2px 8px 8px 32px}
tr.examples ol{margin:2px 0;padding-left:20px}
code.example{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #d0d7de;
  border-radius:4px;padding:0 4px;font-family:"DejaVu Sans Mono",ui-monospace,monospace}
mark{background:#ffb8a8;color:#000;outline:1px solid #cf222e}
.note{color:#57606a;font-style:italic}
figure{margin:4px 0}
figcaption{font-weight:600;margin-bottom:4px}
@media print{body{margin:0}.banner,tr.fail,tr.warn{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


# QualityRecord.result -> the row's CSS class and its result in words: the colour is only a second cue.
MARKS = {"ok": ("pass", "✓ PASS"), "FAIL": ("fail", "✗ FAIL"), "warn": ("warn", "⚠ WARN")}


def mark(r: QualityRecord) -> tuple[str, str]:
    return MARKS[r.result]


def fmt(value: object) -> str:
    """An observed value or threshold as a person reads it (escaped)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{html.escape(str(k))}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return html.escape(str(value))


def example(text: str) -> str:
    """One offending text, escaped, with what is invisible made visible: blanks, controls, mojibake."""
    if not text.strip():
        return f'<code class="example">{html.escape(text)}</code> <span class="note">(blank: {len(text)} chars)</span>'
    more = len(text) - MAX_EXAMPLE_CHARS
    parts = FLAGGED.split(text[:MAX_EXAMPLE_CHARS])
    # re.split alternates: plain text at even positions, a flagged character or sequence at odd ones.
    shown = "".join(html.escape(p) if i % 2 == 0 else f"<mark>{_visible(p)}</mark>" for i, p in enumerate(parts))
    tail = f' <span class="note">… ({more} more chars)</span>' if more > 0 else ""
    return f'<code class="example">{shown}</code>{tail}'


def _visible(flagged: str) -> str:
    """A control character would print as nothing: show its escape instead."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", html.escape(flagged))


def examples_row(r: QualityRecord) -> str:
    """The rows behind a failed check, under its table row."""
    if r.examples:
        items = "".join(f"<li>{example(e)}</li>" for e in r.examples)
        body = f"Example rows (up to 3):<ol>{items}</ol>"
    else:
        body = '<span class="note">No example rows: a check on the whole split, see observed vs threshold.</span>'
    return f'<tr class="examples"><td></td><td colspan="4">{body}</td></tr>'


def row_id(r: QualityRecord) -> str:
    return html.escape(f"{r.split}-{r.check}")


def check_row(r: QualityRecord) -> str:
    kind, word = mark(r)
    cells = (
        f'<td class="mark">{word}</td><td>{html.escape(r.check)}</td><td>{html.escape(r.severity)}</td>'
        f'<td class="value">{fmt(r.observed)}</td><td class="value">{fmt(r.threshold)}</td>'
    )
    row = f'<tr class="check {kind}" id="{row_id(r)}">{cells}</tr>'
    return row if r.passed else row + examples_row(r)


def failed_first(records: list[QualityRecord]) -> list[QualityRecord]:
    """Failed errors, failed warnings, then the passes: the reason to stop comes first."""
    return sorted(records, key=lambda r: (r.passed, r.severity != "error"))


def failures(records: list[QualityRecord]) -> str:
    """Every failed check in one list under the verdict, each a link to its row and examples further down."""
    items = [
        f'<li><a href="#{row_id(r)}">{mark(r)[1]} {html.escape(r.check)} on {html.escape(r.split)}</a>: '
        f"observed {fmt(r.observed)}, threshold {fmt(r.threshold)}</li>"
        for r in failed_first(records)
        if not r.passed
    ]
    return f'<ul class="failures">{"".join(items)}</ul>' if items else ""


def checks_table(records: list[QualityRecord]) -> str:
    ordered = failed_first(records)
    head = "<tr><th>result</th><th>check</th><th>severity</th><th>observed</th><th>threshold</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(check_row(r) for r in ordered)}</tbody></table>"


def axis_end(label_shares: dict[str, dict[str, float]]) -> float:
    """The share the bars' full width stands for: the largest share rounded up to a tenth, with room to spare
    (3 balanced classes: 40%), the same for every split so that splits compare at a glance."""
    top = max((s for shares in label_shares.values() for s in shares.values()), default=0.0)
    return min(1.0, math.ceil(top * 10 + 0.5) / 10)


def share_chart(split: str, shares: dict[str, float], floor: float | None, scale: float) -> str:
    """Horizontal bars, one per label, full width = `scale`; a dashed line at the min_class_share floor,
    and a bar below it in red with its share in words."""
    label_w, bar_w, row_h = 90, 220, 24
    width, height = label_w + bar_w + 90, row_h * len(shares) + 22

    def x(share: float) -> float:
        return label_w + bar_w * min(share / scale, 1.0)

    rows = []
    for i, (label, share) in enumerate(shares.items()):
        y, low = 4 + i * row_h, floor is not None and share < floor
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{x(share) - label_w:.1f}" height="{row_h - 8}" '
            f'fill="{"#cf222e" if low else "#0969da"}"><title>{html.escape(label)}: {share:.1%}</title></rect>'
            f'<text x="{x(share) + 4:.1f}" y="{y + 15}">{share:.1%}{" below min" if low else ""}</text>'
        )
    bottom = height - 18
    rows.append(
        f'<line x1="{label_w + bar_w}" y1="2" x2="{label_w + bar_w}" y2="{bottom}" stroke="#d0d7de"/>'
        f'<text x="{label_w + bar_w}" y="{height - 4}" text-anchor="middle" fill="#57606a">{scale:.0%}</text>'
    )
    if floor is not None:
        fx = x(floor)
        rows.append(
            f'<line x1="{fx:.1f}" y1="2" x2="{fx:.1f}" y2="{bottom}" stroke="#cf222e" stroke-dasharray="4 3"/>'
            f'<text x="{fx:.1f}" y="{height - 4}" text-anchor="middle" fill="#cf222e">min {floor:.0%}</text>'
        )
    title = f"label shares, {html.escape(split)}"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{title}" font-size="12" font-family="DejaVu Sans,sans-serif">{"".join(rows)}</svg>'
    )
    return f"<figure><figcaption>Label shares</figcaption>{svg}</figure>"


def threshold(records: list[QualityRecord], split: str, check: str) -> float | None:
    found = [r.threshold for r in records if r.split == split and r.check == check]
    return float(found[0]) if found and isinstance(found[0], (int, float)) else None


def tally(records: list[QualityRecord]) -> tuple[int, int]:
    """(failed error checks, failed warnings)."""
    failed = [r for r in records if not r.passed]
    errors = sum(r.severity == "error" for r in failed)
    return errors, len(failed) - errors


def banner(records: list[QualityRecord]) -> str:
    errors, warnings = tally(records)
    if errors:
        kind, text = "fail", f"✗ FAIL: {errors} error check(s) failed: validate stops, nothing trains on this data"
    elif warnings:
        kind, text = "warn", f"⚠ WARN: {warnings} warning(s): training may go on; read them before you approve"
    else:
        kind, text = "pass", f"✓ PASS: all {len(records)} checks passed"
    if errors and warnings:
        text += f"; also {warnings} warning(s)"
    return f'<div class="banner {kind}">{text}</div>'


def split_section(split: str, records: list[QualityRecord], shares: dict[str, float] | None, scale: float) -> str:
    errors, warnings = tally(records)
    counts = f"{len(records)} checks: {errors} FAIL, {warnings} WARN, {len(records) - errors - warnings} PASS"
    chart = share_chart(split, shares, threshold(records, split, "min_class_share"), scale) if shares else ""
    heading = f'<h2 id="{html.escape(split)}">{html.escape(split)} <small>({counts})</small></h2>'
    return f'{heading}<div class="split">{checks_table(records)}{chart}</div>'


def render(records: list[QualityRecord], label_shares: dict[str, dict[str, float]], docs_index: str) -> str:
    """The whole page: a verdict, then per split its checks and label shares. `label_shares` is
    split -> label -> share; `docs_index` is the href of GX's Data Docs (relative to the page)."""
    splits = list(dict.fromkeys([r.split for r in records] + list(label_shares)))
    scale = axis_end(label_shares)
    sections = "".join(
        split_section(split, [r for r in records if r.split == split], label_shares.get(split), scale)
        for split in splits
    )
    nav = " · ".join(f'<a href="#{html.escape(s)}">{html.escape(s)}</a>' for s in splits)
    docs = (
        f'Great Expectations Data Docs (styles and icons need the internet): <a href="{html.escape(docs_index)}">'
        f"{html.escape(docs_index)}</a>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>tuneops data quality review</title><style>{CSS}</style></head><body>"
        f'<h1>Data quality review</h1><p class="meta">Splits: {nav}. {docs}</p>'
        f"{banner(records)}{failures(records)}{sections}</body></html>\n"
    )


def shares_by_split(frames: dict[str, pd.DataFrame], labels: list[str]) -> dict[str, dict[str, float]]:
    """split -> label -> share of the split's rows, as the min_class_share check measured it."""
    return {
        split: dict(zip(labels, quality.label_shares(df, frames["train"], labels)["share"].astype(float), strict=True))
        for split, df in frames.items()
    }
