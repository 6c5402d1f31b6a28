"""`outputs/report/index.md`: every rendered table and every figure on one page; and the README's
results block, between `RESULTS_BEGIN` and `RESULTS_END`."""

from __future__ import annotations

from pathlib import Path

from odenets.reporting.tables import RenderedTable, to_markdown

RESULTS_BEGIN = "<!-- results: written by `python scripts/tables.py --budget cpu --readme README.md` -->"
RESULTS_END = "<!-- results: end -->"


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


def write_report(path: str | Path, tables: list[RenderedTable], figures_dir: str | Path, budget: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = sorted(Path(figures_dir).glob("*.png"))
    lines = [f"# odenets: the papers' tables and figures, reproduced (budget: {budget})", "",
             "Every cell shows our value, the paper's and the difference, and says where ours comes from "
             "(runs, a count, a measurement); a missing cell names the command that fills it. "
             "Regenerate with `make reproduce-tables BUDGET=" + budget + "` (runs what is missing, then renders) "
             "or `make tables figures` (renders only).", "", "## Tables", ""]
    lines += [f"- [{t.name}](#{t.name.replace('_', '')}): {t.title}" for t in tables]
    for t in tables:
        lines += ["", f'<a id="{t.name.replace("_", "")}"></a>', "", to_markdown(t)]
    lines += ["", "## Figures", ""]
    if not figures:
        lines.append("No figures yet: `make figures` renders those whose inputs exist and prints the commands "
                     "for the rest.")
    for fig in figures:
        rel = Path("..") / fig.relative_to(Path(figures_dir).parent) if fig.is_relative_to(Path(figures_dir).parent) \
            else fig
        pdf = rel.with_suffix(".pdf").as_posix()
        lines += [f"### {fig.stem}", "", f"![{fig.stem}]({rel.as_posix()}) ([PDF]({pdf}))", ""]
    path.write_text("\n".join(lines) + "\n")
    return path
