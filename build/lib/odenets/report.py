"""`outputs/report/index.md`: every rendered table and every figure on one page."""

from __future__ import annotations

from pathlib import Path

from odenets.tables import RenderedTable, to_markdown


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
