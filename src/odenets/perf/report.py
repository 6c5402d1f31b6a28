"""The benchmark's report: its JSON results (`odenets.perf.sections.run`) as Markdown tables."""

from __future__ import annotations

from odenets.formatting import markdown_grid


def _check(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def format_markdown(results: dict) -> str:
    """The headline figures against their targets, then the per-scheme and per-recurrent-model tables."""
    meta = results["meta"]
    quick = " (quick)" if meta["quick"] else ""
    head = (f"torch {meta['torch']}, {meta['device']} ({meta['device_name']}, {meta['threads']} threads), "
            f"{meta['clock']} clock, {meta['rounds']} interleaved rounds, medians{quick}")
    figures = []  # (figure, measured, target, met)
    if "overhead" in results:
        r = results["overhead"]
        figures.append(("overhead: Lightning step / plain step (RK4-58)", f"{r['ratio']:.3f}", f"≤ {r['target']}",
                        _check(r["ok"])))
    for row in results.get("schemes", {}).get("rows", []):
        for kind in ("time", "memory"):
            if "skipped" not in row and row[f"{kind}_target"] is not None:
                met = row[f"{kind}_ratio"] <= row[f"{kind}_target"]
                figures.append((f"{kind}: {row['scheme']} / euler, depth {row['depth']}", f"{row[f'{kind}_ratio']:.3f}",
                                f"≤ {row[f'{kind}_target']}", _check(met)))
    if "input" in results:
        r = results["input"]
        figures.append((f"input: tensor pipeline / {r['baseline']} (images/s)", f"{r['ratio']:.1f}",
                        f"≥ {r['target']}", _check(r["ok"])))
    if "scaling" in results:
        r = results["scaling"]
        figures.append((f"scaling: R² of step time vs depth {r['depths'][0]}–{r['depths'][-1]}", f"{r['r2']:.4f}",
                        f"≥ {r['target']}", _check(r["ok"])))
    if "utilisation" in results:
        figures.append(("utilisation: step FLOP/s / matmul FLOP/s", f"{results['utilisation']['ratio']:.3f}", "", ""))
    for row in results.get("recurrent", {}).get("rows", []):
        if row["target"] is not None:
            figures.append((f"recurrent, {row['shape']}: {row['model']} / nn.{row['baseline'].upper()}",
                            f"{row['ratio']:.2f}", f"≤ {row['target']}", _check(row["ok"])))
    parts = [head, "", markdown_grid(figures, ["figure", "measured", "target", "met"])]
    if "recurrent" in results:
        rows = [(f"{r['shape']} ({r['batch']}x{r['steps']}x{r['features']}, {r['hidden']})", r["model"],
                 f"{r['step_s']:.4f}", f"{r['ratio']:.2f} (nn.{r['baseline'].upper()})")
                for r in results["recurrent"]["rows"]]
        parts += ["", markdown_grid(rows, ["shape (batch x steps x features, hidden)", "model", "step s",
                                           "/ torch baseline"])]
    if "schemes" in results:
        rows = [(r["depth"], r["scheme"], "(no such depth)", "", "", "", "") if "skipped" in r else
                (r["depth"], r["scheme"], f"{r['step_s']:.3f}", f"{r['time_ratio']:.3f}", f"{r['saved_mib']:.1f}",
                 f"{r['peak_mib']:.1f}", f"{r['memory_ratio']:.3f}") for r in results["schemes"]["rows"]]
        parts += ["", markdown_grid(rows, ["depth", "scheme", "step s", "time / euler", "saved MiB", "peak MiB",
                                           "memory / euler"])]
    if "adjoint" in results:
        rows = [(r["method"], r["mode"], f"{r['step_s']:.4f}", f"{r['time_ratio']:.2f}", f"{r['saved_mib']:.1f}",
                 f"{r['peak_mib']:.1f}", f"{r['memory_ratio']:.2f}") for r in results["adjoint"]["rows"]]
        parts += ["", markdown_grid(rows, ["ODE-Net method", "gradient", "step s", "time / backprop", "saved MiB",
                                           "peak MiB", "memory / backprop"])]
    return "\n".join(parts)
