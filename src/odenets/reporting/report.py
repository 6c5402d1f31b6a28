"""The report: every rendered table (with the claims tested) and every figure of a budget on one page, as
`outputs/report/index.md` and a self-contained `index.html` (figures embedded, each cell's provenance in its
tooltip, readable offline); and the README's results block, between `RESULTS_BEGIN` and `RESULTS_END`."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from odenets.reporting.published import load_table
from odenets.reporting.render import VERDICT_LEGEND, RenderedTable, grid, to_html, to_markdown, verdict_grid
from odenets.reporting.summary import PAPERS

RESULTS_BEGIN = "<!-- results: written by `python scripts/tables.py --budget cpu --readme README.md` -->"
RESULTS_END = "<!-- results: end -->"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}td[title]{cursor:help;text-decoration:underline dotted #999}caption{text-align:left;
font-weight:bold;margin-bottom:.3em}.note,.legend{font-size:12px;margin:.2em 0;color:#444}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#444}
nav a{margin-right:1em}"""


def _split_readme(readme: str) -> tuple[str, str, str]:
    """(text before the results block, the block without its markers, text after it)."""
    if RESULTS_BEGIN not in readme or RESULTS_END not in readme:
        raise ValueError(f"the README has no results block ({RESULTS_BEGIN} ... {RESULTS_END})")
    head, rest = readme.split(RESULTS_BEGIN, 1)
    block, tail = rest.split(RESULTS_END, 1)
    return head, block.strip("\n"), tail


def readme_results(readme: str) -> str:
    """The results block of a README's text (without its markers)."""
    return _split_readme(readme)[1]


def write_readme_results(path: str | Path, block: str) -> None:
    """Replace the results block of the README at `path` with `block`."""
    path = Path(path)
    head, _, tail = _split_readme(path.read_text())
    path.write_text(f"{head}{RESULTS_BEGIN}\n{block.strip()}\n{RESULTS_END}{tail}")


def _figures(figures_dir: Path) -> tuple[list[Path], dict]:
    provenance = figures_dir / "provenance.json"
    return sorted(figures_dir.glob("*.png")), json.loads(provenance.read_text()) if provenance.is_file() else {}


def _figure_caption(name: str, about: dict) -> str:
    if not about:
        return name
    seeds = f", {about['seeds']} seed(s)" if about.get("runs") else ""
    return f"{name}: {about.get('runs', 0)} run(s){seeds}; {about['commits']}"


def write_report(out_dir: str | Path, tables: list[RenderedTable], figures_dir: str | Path, budget: str
                 ) -> tuple[Path, Path]:
    """`index.md` and `index.html` under `out_dir`; returns both paths."""
    out_dir, figures_dir = Path(out_dir), Path(figures_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures, provenance = _figures(figures_dir)
    intro = ("Every cell shows our value, the paper's and the difference, and says where ours comes from (runs, a "
             "count, a measurement); a missing cell names the command that fills it. Regenerate with "
             f"`make reproduce-tables BUDGET={budget}` (runs what is missing, then renders) or `make report` "
             "(renders only).")
    md = [f"# odenets: the papers' tables and figures, reproduced (budget: {budget})", "", intro, "", "## Tables", ""]
    md += [f"- [{t.name}](#{t.name.replace('_', '')}): {t.title}" for t in tables]
    for t in tables:
        md += ["", f'<a id="{t.name.replace("_", "")}"></a>', "", to_markdown(t)]
    md += ["", "## Figures", ""]
    if not figures:
        md.append("No figures yet: `make figures` renders those whose inputs exist and prints the commands for the "
                  "rest.")
    for fig in figures:
        rel = Path("..") / fig.relative_to(figures_dir.parent) if fig.is_relative_to(figures_dir.parent) else fig
        md += [f"### {fig.stem}", "", f"![{fig.stem}]({rel.as_posix()}) ([PDF]({rel.with_suffix('.pdf').as_posix()}))",
               "", _figure_caption(fig.stem, provenance.get(fig.stem, {})), ""]
    md_path = out_dir / "index.md"
    md_path.write_text("\n".join(md) + "\n")
    html_path = out_dir / "index.html"
    html_path.write_text(_html(tables, figures, provenance, budget, intro))
    return md_path, html_path


def _html(tables: list[RenderedTable], figures: list[Path], provenance: dict, budget: str, intro: str) -> str:
    esc = html.escape
    parts = [f"<h1>odenets: the papers' tables and figures, reproduced (budget: {esc(budget)})</h1>",
             f"<p>{esc(intro)} Hover over a cell to see where its number comes from.</p>",
             "<nav><a href='#verdicts'>Claims tested</a><a href='#tables'>Tables</a>"
             "<a href='#figures'>Figures</a></nav>",
             "<h2 id='verdicts'>The papers' claims, tested on our seeds</h2>"]
    for paper, title in PAPERS.items():
        tested = [v for t in tables if load_table(t.name)["paper"] == paper for v in t.verdicts]
        if tested:
            g = verdict_grid(tested)
            g.legend = []
            parts.append(to_html(g, caption=title))
    parts += [f"<p class='legend'>{esc(VERDICT_LEGEND)}.</p>", "<h2 id='tables'>Tables</h2>"]
    for t in tables:
        parts += [f"<h3 id='{esc(t.name)}'>{esc(t.name)}: {esc(t.title)}</h3>", to_html(grid(t))]
    parts.append("<h2 id='figures'>Figures</h2>")
    if not figures:
        parts.append("<p>No figures yet: <code>make figures</code> renders those whose inputs exist.</p>")
    for fig in figures:
        data = base64.b64encode(fig.read_bytes()).decode()
        caption = _figure_caption(fig.stem, provenance.get(fig.stem, {}))
        parts.append(f"<figure id='{esc(fig.stem)}'><img alt='{esc(fig.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>odenets report ({esc(budget)})</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
