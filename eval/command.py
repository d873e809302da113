"""The one shape of every evaluation: ``gmae eval <protocol> --checkpoint CKPT [--config FILE] [key=value ...]``.

A protocol module declares ``command = EvalCommand(...)``: its config dataclass (YAML files under
``configs/<protocol>/``), its ``evaluate(cfg, ctx) -> Outcome`` and, where users expect them, command-line
shortcuts that are nothing but names for config keys (``--oracle`` is ``oracle=true``), so every setting is saved
in ``OUT/config.yaml`` and can be named, copied and diffed. The shell does the rest, the same way for all:

1. build the config: schema defaults <- ``--config`` YAML <- shortcuts and ``key=value`` overrides;
2. validate it (the protocol's checks, naming the key) and check that the checkpoint file exists;
3. save ``OUT/config.yaml`` (resumable loops save it themselves, after their resume check);
4. resolve the device (``run.device``; torchrun's environment for multi-process runs);
5. call ``evaluate``, which loads the checkpoint through the one loader, :mod:`gmae.engine.checkpoint` and does the protocol;
6. append the records to the results store (``--results``, default: the output dir) on rank 0, print one line.

Bad input raises ``InputError`` / ``ConfigError``; ``gmae`` prints it as one line and exits 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gmae.errors import InputError


@dataclass
class EvalRunConfig:
    """The ``run:`` section every evaluation has (training evaluations extend it with the loop's settings)."""
    out_dir: str = "runs/eval"
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True
    # label of the result records; default: the model name stored in the checkpoint, else the file name
    model_name: Optional[str] = None


@dataclass(frozen=True)
class Shortcut:
    """A command-line flag that sets one config key: ``Shortcut("--mask-ratio", "mask_ratios", nargs="+")``."""
    flag: str
    key: str
    help: str
    nargs: Optional[str] = None
    switch: bool = False  # a flag without value that sets the key to ``sets``
    sets: str = "true"  # e.g. ``Shortcut("--quiet", "run.progress", ..., switch=True, sets="false")``


@dataclass
class Outcome:
    """What a protocol returns: its result records (the shell stores them), one summary line, and the numbers
    for programmatic callers."""
    records: list = field(default_factory=list)
    line: str = ""
    summary: dict = field(default_factory=dict)


@dataclass
class Context:
    """What the shell hands to ``evaluate``: the checkpoint path (None for protocols without one), the process's
    device and rank (:class:`gmae.engine.distributed.DistInfo`) and the output folder."""
    cfg: Any
    checkpoint: Optional[Path]
    dist: Any
    out_dir: Path

    @property
    def device(self):
        return self.dist.device

    def model_label(self, checkpoint: Optional[str | Path] = None, name: Optional[str] = None) -> str:
        """``name`` or ``run.model_name`` when set, else the model name stored in the checkpoint."""
        from gmae.engine.checkpoint import stored_model_name

        name = name or getattr(self.cfg.run, "model_name", None)
        return name or stored_model_name(checkpoint or self.checkpoint)

    def record(self, protocol: str, metric: str, value, **extra) -> dict:
        """One result record with the shell's provenance: model label, checkpoint (path + sha256), the full
        config, the data root and the output dir; ``extra`` adds or replaces fields."""
        from gmae.config import config_to_dict
        from gmae.results import make_record

        fields = dict(model=self.model_label(), checkpoint=self.checkpoint, config=config_to_dict(self.cfg),
                      data=str(self.cfg.data.root), out_dir=str(self.out_dir))
        fields.update(extra)
        return make_record(protocol, metric, value, **fields)


@dataclass
class EvalCommand:
    """``gmae eval <name>``: see the module docstring for what the shell does around ``evaluate``."""
    name: str
    schema: type
    evaluate: Callable[[Any, Context], Outcome]
    validate: Optional[Callable[[Any], None]] = None
    checkpoint: str = "required"  # required | none
    shortcuts: Sequence[Shortcut] = ()
    data_help: str = "data root (sets data.root)"
    config_help: str = ""
    # a resumable training loop writes OUT/config.yaml itself, after checking that a resume fits
    saves_config: bool = False

    # -- command line ------------------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        if self.checkpoint == "required":
            parser.add_argument("--checkpoint", required=True,
                                help="checkpoint: our checkpoint.pth, a `gmae export` file, official MAE or timm")
        parser.add_argument("--config", default=None,
                            help="YAML file or a name under configs/ " + (self.config_help or
                                                                            f"(e.g. {self.name}/...)"))
        parser.add_argument("--data", default=None, help=self.data_help)
        parser.add_argument("--out", default=None, help="output dir (sets run.out_dir); a rerun resumes there")
        parser.add_argument("--results", default=None,
                            help="results store (dir or .jsonl) for the records; default: the output dir")
        parser.add_argument("--model-name", default=None, help="label of the records (sets run.model_name)")
        for s in self.shortcuts:
            if s.switch:
                parser.add_argument(s.flag, action="store_true", default=None,
                                    help=f"{s.help} (sets {s.key}={s.sets})")
            else:
                parser.add_argument(s.flag, nargs=s.nargs, default=None, help=f"{s.help} (sets {s.key})")
        parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.device=cpu")

    def overrides(self, args: argparse.Namespace) -> list[str]:
        """``key=value`` strings for the common flags and the shortcuts, then the user's own (which win)."""
        import json

        out: list[str] = []
        extra = list(args.overrides)
        for flag, key in (("out", "run.out_dir"), ("data", "data.root"), ("model_name", "run.model_name")):
            if getattr(args, flag, None) is not None:
                out.append(f"{key}={getattr(args, flag)}")
        for s in self.shortcuts:
            value = getattr(args, s.flag.lstrip("-").replace("-", "_"))
            if value is None:
                continue
            if s.switch:
                out.append(f"{s.key}={s.sets}")
            elif isinstance(value, list):
                # `--mask-ratio 0 0.75 key=value`: argparse hands trailing overrides to the list flag
                extra += [v for v in value if "=" in v]
                out.append(f"{s.key}={json.dumps([_scalar(v) for v in value if '=' not in v])}")
            else:
                out.append(f"{s.key}={value}")
        return out + extra

    def config(self, config_file: Optional[str] = None, overrides: Sequence[str] = ()) -> Any:
        """The validated config (schema <- file <- overrides)."""
        from gmae.config import load_config

        cfg = load_config(self.schema, config_file, overrides)
        if self.validate is not None:
            try:
                self.validate(cfg)
            except InputError:
                raise
            except ValueError as e:
                raise InputError(str(e)) from None
        return cfg

    def run(self, args: argparse.Namespace) -> int:
        outcome = self.evaluate_config(self.config(args.config, self.overrides(args)),
                                       getattr(args, "checkpoint", None), args.results)
        if outcome.line:
            print(outcome.line)
        return 0

    # -- the protocol around evaluate() --------------------------------------------------------------------
    def evaluate_config(self, cfg: Any, checkpoint: Optional[str | Path] = None,
                        results: Optional[str | Path] = None) -> Outcome:
        """Run the protocol on a ready config (the programmatic entry; ``run`` is the command line's)."""
        from gmae.config import save_config
        from gmae.engine.checkpoint import require_file
        from gmae.engine.distributed import cleanup, init_distributed
        from gmae.results import ResultsStore

        path = None
        if self.checkpoint == "required":
            path = require_file(checkpoint)
        out_dir = Path(cfg.run.out_dir)
        dist_info = init_distributed(cfg.run.device)
        try:
            if dist_info.is_main and not self.saves_config:
                save_config(cfg, out_dir / "config.yaml")
            outcome = self.evaluate(cfg, Context(cfg, path, dist_info, out_dir))
            if dist_info.is_main and outcome.records:
                ResultsStore(results or out_dir).append(outcome.records)
            return outcome
        finally:
            cleanup()


def _scalar(text: str):
    import yaml

    value = yaml.safe_load(text)
    # YAML 1.1 reads 32:48 as the base-60 number 1968: a number written with a colon stays the text it was
    return text if isinstance(value, (int, float)) and ":" in text else value
