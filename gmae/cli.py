"""The one command-line entry point: ``gmae <command> [<subcommand>] ...``.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int | None``, or a
``command`` object with those two methods (every ``gmae eval`` protocol: ``eval.command.EvalCommand``).
Errors about the input or the machine (see :func:`one_line_error`) print one line and exit 2 (bad input) or
1 (full disk, a deliberate stop); ``GMAE_DEBUG=1`` shows their traceback. Modules are imported only when their
command is chosen, so ``gmae --help`` is instant and a CPU-only
install never imports gsplat, detectron2 or torch-fidelity unless the command needs them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# (command words, module, one-line help). Groups ("data", "eval") are formed from the first word.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("data", "tiny"), "gmae.data.tiny", "write the embedded tiny multi-task data set in the real on-disk formats"),
    (("eval", "bsds"), "eval.bsds", "BSDS500 edge benchmark: ODS / OIS / AP / R50 of soft edge maps"),
    (("eval", "classic-edges"), "eval.classic_edges", "Sobel / Canny baseline edge maps for BSDS500"),
    (("pretrain",), "gmae.engine.pretrain", "pretrain GMAE or MAE (torchrun for multi-GPU), resumable"),
    (("export",), "gmae.engine.export", "export an encoder (MAE/timm key contract) or predicted Gaussians (.ply)"),
    (("eval", "linprobe"), "eval.linprobe", "linear probe (MAE protocol: frozen encoder, BN + linear, LARS)"),
    (("eval", "finetune"), "eval.finetune", "fine-tune end to end (MAE protocol: layer decay, mixup, RandAugment)"),
    (("eval", "knn"), "eval.knn", "weighted kNN on frozen features (k 20, T 0.07): a minutes-long proxy"),
    (("eval", "recon"), "eval.recon", "reconstruction rFID / PSNR of GMAE and MAE checkpoints (mask 0 and 0.75)"),
    (("reproduce",), "reports.reproduce", "regenerate the paper's tables: presets smoke (CI), tiny (CPU), paper (SLURM)"),
    (("report",), "reports.report", "the paper's tables and figures from results stores (Markdown, CSV, LaTeX, PNG/PDF)"),
    (("eval", "coco"), "eval.coco", "COCO box / mask AP: ViTDet Mask R-CNN in detectron2 on an encoder"),
    (("eval", "layers"), "eval.zeroshot.layers", "zero-shot depth layers: renders of the nearest K Gaussians (figure)"),
    (("eval", "figure-ground"), "eval.zeroshot.figure_ground", "zero-shot figure-ground from depth layers: IoU, acc, max F"),
    (("eval", "edges"), "eval.zeroshot.edges", "zero-shot edges from depth groups, scored on BSDS500 (ODS/OIS/AP)"),
    (("eval", "figures"), "eval.figures", "figures that run a model: Gaussian centres, effect of the maximum scale c"),
]

GROUP_HELP = {
    "data": "data sets: generate the tiny set",
    "eval": "evaluations: a config and a checkpoint in, result records out",
}


def _groups() -> dict[str, dict[str, tuple[str, str]]]:
    groups: dict[str, dict[str, tuple[str, str]]] = {}
    for words, module, help_ in COMMANDS:
        if len(words) == 1:
            groups.setdefault(words[0], {})[""] = (module, help_)
        else:
            groups.setdefault(words[0], {})[words[1]] = (module, help_)
    return groups


def _top_help(groups) -> str:
    lines = ["usage: gmae <command> [<subcommand>] [options]", "", "commands:"]
    for name, subs in groups.items():
        if "" in subs:
            lines.append(f"  {name:<22}{subs[''][1]}")
        else:
            lines.append(f"  {name:<22}{GROUP_HELP.get(name, '')}")
            for sub, (_, help_) in subs.items():
                lines.append(f"    {sub:<20}{help_}")
    lines += ["", "Run 'gmae <command> [<subcommand>] --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = _groups()
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help(groups))
        return 0
    if argv[0] in ("-V", "--version"):
        from gmae import __version__

        print(f"gmae {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in groups:
        print(f"gmae: unknown command {name!r}\n\n{_top_help(groups)}", file=sys.stderr)
        return 2
    subs = groups[name]
    if "" in subs:
        prog, (module, help_) = f"gmae {name}", subs[""]
    else:
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: gmae {name} <subcommand> [options]\n\nsubcommands:")
            for sub, (_, h) in subs.items():
                print(f"  {sub:<20}{h}")
            return 0 if rest else 2
        if rest[0] not in subs:
            print(f"gmae {name}: unknown subcommand {rest[0]!r}; choose from {sorted(subs)}", file=sys.stderr)
            return 2
        prog, (module, help_) = f"gmae {name} {rest[0]}", subs[rest[0]]
        rest = rest[1:]
    mod = importlib.import_module(module)
    entry = getattr(mod, "command", mod)
    parser = argparse.ArgumentParser(prog=prog, description=(mod.__doc__ or help_).strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    entry.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        check_outputs(args)
        code = entry.run(args)
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (those save and exit 130 themselves)
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - only the kinds below are turned into one line; others re-raise
        line = one_line_error(e)
        if line is None or os.environ.get("GMAE_DEBUG"):
            raise
        message, code = line
        print(f"{prog}: error: {message}", file=sys.stderr)
    return int(code or 0)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable ``--out`` / ``--results`` before the command starts its expensive work."""
    from gmae.io import check_writable

    if getattr(args, "out", None):
        check_writable(args.out, "--out")
    # a list of --results is an input (``gmae report`` reads stores); a single one is the store written to
    if isinstance(getattr(args, "results", None), str):
        check_writable(args.results, "--results")


def one_line_error(e: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for errors that are about the input or the machine, not a bug; None otherwise.

    Bad input (our InputError/ConfigError, any ValueError, a missing or unreadable path) exits 2; a full disk
    and a deliberate stop exit 1. Everything else keeps its traceback: it is a bug to report.
    """
    from gmae.errors import GmaeError

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {e.filename}" if e.filename else ""
        return f"no space left on device{where} (the previous files are kept)", 1
    if isinstance(e, GmaeError):
        code = e.exit_code
    elif isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                        FileExistsError)):
        code = 2
    else:
        return None
    text = str(e).strip().strip("'\"")
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return " ".join(text.split()) or type(e).__name__, code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
