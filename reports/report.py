"""Write the paper's tables and figures from one or more results stores.

  gmae report --results RUN_DIR [RUN_DIR ...] --out REPORT_DIR

REPORT_DIR/report.md (all tables, the paper's value next to ours and where ours came from),
tables/<name>.{md,csv,tex}, figures/*.{png,pdf} (number-of-Gaussians plot, ablation plots) and any figure the
evaluations left in the run dirs (reconstructions, layers, edges, ...), copied under figures/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gmae.io import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", nargs="+", required=True,
                        help="results stores: results.jsonl files or dirs (searched recursively), merged")
    parser.add_argument("--out", required=True, help="report dir")
    parser.add_argument("--title", default="GMAE reproduction report")


def run(args: argparse.Namespace) -> int:
    for p in args.results:
        if not Path(p).exists():
            raise FileNotFoundError(f"--results: not found: {p}")
    path = write_report(args.results, args.out, title=args.title)
    print(f"wrote {path}")
    return 0


def plot_num_gaussians(table, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = table.frame
    cols = [c for c in ("ours ft", "ours lin", "ours knn") if df[c].notna().any()]
    if not cols:
        return []
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for c in cols:
        sel = df[df[c].notna()]
        ax.plot(sel["k"], sel[c], marker="o", label=c.replace("ours ", ""))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of Gaussians k")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Number of Gaussians (ours)")
    ax.legend(frameon=False)
    ax.text(0.01, -0.28, "paper: lin rises with k; ft saturates after 256", transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"num_gaussians.{ext}"
        fig.savefig(p, dpi=150)
        paths.append(p)
    plt.close(fig)
    return paths


def collect_figures(results: list[str], out_dir: Path) -> list[Path]:
    """Copy the figures the evaluations wrote (every PDF with a PNG beside it under the run dirs) into the
    report, named after where they came from (e.g. ``eval_gmae_recon_figure_recon_0.png``)."""
    copied = []
    for root in results:
        root = Path(root)
        base = root if root.is_dir() else root.parent
        for pdf in sorted(base.rglob("*.pdf")):
            png = pdf.with_suffix(".png")
            if not png.exists() or out_dir.parent in pdf.parents:
                continue
            stem = "_".join(pdf.relative_to(base).with_suffix("").parts).replace("_figures_", "_")
            for src in (png, pdf):
                dest = out_dir / f"{stem}{src.suffix}"
                shutil.copyfile(src, dest)
                copied.append(dest)
    return copied


def write_report(results: list[str], out: str | Path, title: str = "GMAE reproduction report") -> Path:
    from reports.tables import all_tables, load_frame, to_latex, to_markdown

    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "figures", ignore_errors=True)  # regenerated whole: no figure of an older run stays
    (out / "figures").mkdir(parents=True, exist_ok=True)
    df = load_frame(results)
    tables = all_tables(df)
    parts = [f"# {title}", "",
             f"Records: {len(df)} from {', '.join(str(r) for r in results)}. Hardware and commit of each number are "
             "in the `source` column and in tables/*.csv; paper values come from reports/paper.py.", ""]
    for t in tables:
        md = to_markdown(t)
        atomic_write_text(out / "tables" / f"{t.name}.md", md)
        atomic_write_text(out / "tables" / f"{t.name}.tex", to_latex(t))
        atomic_write_text(out / "tables" / f"{t.name}.csv", t.frame.to_csv(index=False))
        parts.append(md)
    figs = plot_num_gaussians(next(t for t in tables if t.name == "num_gaussians"), out / "figures")
    figs += collect_figures(results, out / "figures")
    if figs:
        parts += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs if p.suffix == ".png"]
    atomic_write_text(out / "records.csv", df.to_csv(index=False))
    return atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
