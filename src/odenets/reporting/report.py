"""The report: the claims tested with their forest plots, every rendered table and every figure of a budget on one
page, as `outputs/report/index.md` and a self-contained `index.html` (figures embedded, each cell's provenance in
its tooltip, readable offline); and the README's results block, between `RESULTS_BEGIN` and `RESULTS_END`. The
forest plots are drawn from the verdicts the page shows (`write_forests`), never read from elsewhere."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from odenets.reporting.figures import save
from odenets.reporting.figures.forest import digest, forest_rows, plot_forest
from odenets.reporting.render import VERDICT_LEGEND, RenderedTable, grid, to_html, to_markdown, verdict_grid
from odenets.reporting.summary import PAPERS, by_paper, forest_name
from odenets.reporting.verdicts import runs_of
from odenets.results import commits

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


def write_forests(tables: list[RenderedTable], out_dir: str | Path, formats: tuple[str, ...] = ("png",)
                  ) -> dict[str, Path]:
    """Each paper's forest plot of the tables' verdicts under `out_dir` (`summary.forest_name`), with the commits
    of its runs and a hash of what it draws (`forest.digest`) in its metadata; {paper: PNG}."""
    out = {}
    for paper, verdicts in by_paper(v for t in tables for v in t.verdicts).items():
        runs = runs_of(verdicts)
        about = f"{commits(runs) if runs else 'no runs'}; forest data {digest(forest_rows(verdicts))}"
        fig = plot_forest(verdicts, f"{PAPERS[paper]}: the claims tested on our seeds (budget {tables[0].budget})")
        out[paper] = save(fig, out_dir, forest_name(paper, tables[0].budget), about, formats)[0]
    return out


def _figures(figures_dir: Path) -> tuple[list[Path], dict]:
    """The figures `make figures` drew, but its forest plots (the page draws its own, from the verdicts it shows)."""
    provenance = figures_dir / "provenance.json"
    return (sorted(p for p in figures_dir.glob("*.png") if not p.stem.startswith("verdicts_")),
            json.loads(provenance.read_text()) if provenance.is_file() else {})


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
    forests = write_forests(tables, out_dir)
    intro = ("Every cell shows our value, the paper's and the difference, and says where ours comes from (runs, a "
             "count, a measurement); a missing cell names the command that fills it. Regenerate with "
             f"`make reproduce-tables BUDGET={budget}` (runs what is missing, then renders) or `make report` "
             "(renders only).")
    md = [f"# odenets: the papers' tables and figures, reproduced (budget: {budget})", "", intro, ""]
    if forests:
        md += ["## The papers' claims, tested on our seeds", "", "Each table below lists its claims; per paper:", ""]
        md += [f"![{PAPERS[paper]}]({path.name})\n" for paper, path in forests.items()]
    md += ["## Tables", ""]
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
    html_path.write_text(_html(tables, figures, forests, provenance, budget, intro))
    return md_path, html_path


def _img(path: Path, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def _html(tables: list[RenderedTable], figures: list[Path], forests: dict[str, Path], provenance: dict, budget: str,
          intro: str) -> str:
    esc = html.escape
    parts = [f"<h1>odenets: the papers' tables and figures, reproduced (budget: {esc(budget)})</h1>",
             f"<p>{esc(intro)} Hover over a cell to see where its number comes from.</p>",
             "<nav><a href='#verdicts'>Claims tested</a><a href='#tables'>Tables</a>"
             "<a href='#figures'>Figures</a></nav>",
             "<h2 id='verdicts'>The papers' claims, tested on our seeds</h2>"]
    for paper, tested in by_paper(v for t in tables for v in t.verdicts).items():
        g = verdict_grid(tested)
        g.legend = []
        parts.append(to_html(g, caption=PAPERS[paper]))
        parts.append(f"<figure id='{esc(forest_name(paper, budget))}'>{_img(forests[paper], PAPERS[paper])}"
                     f"<figcaption>{esc(PAPERS[paper])}: each claim's difference (dot), 95% Welch interval (thick), "
                     f"Holm-adjusted interval (thin), the paper's difference (diamond), the verdict as the colour"
                     f"</figcaption></figure>")
    parts += [f"<p class='legend'>{esc(VERDICT_LEGEND)}.</p>", "<h2 id='tables'>Tables</h2>"]
    for t in tables:
        parts += [f"<h3 id='{esc(t.name)}'>{esc(t.name)}: {esc(t.title)}</h3>", to_html(grid(t))]
    parts.append("<h2 id='figures'>Figures</h2>")
    if not figures:
        parts.append("<p>No figures yet: <code>make figures</code> renders those whose inputs exist.</p>")
    for fig in figures:
        caption = _figure_caption(fig.stem, provenance.get(fig.stem, {}))
        parts.append(f"<figure id='{esc(fig.stem)}'>{_img(fig, fig.stem)}<figcaption>{esc(caption)}</figcaption>"
                     f"</figure>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>odenets report ({esc(budget)})</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
