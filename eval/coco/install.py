"""Installing detectron2 for ``gmae eval coco``, and repacking the PyPI wheel that makes it possible.

:func:`repack_wheel` turns the sha256-pinned ``sal-detectron2==0.7.2`` cp310 wheel into the pure-Python
``sal_detectron2-0.7.2+purepy-py3-none-any.whl`` (no ``_C``); :func:`check` imports what eval.coco uses.
As a script (no gmae import): ``python eval/coco/install.py repack WHEEL OUTDIR`` | ``check`` | ``requirements``.
Design notes (the two install routes, what the missing ``_C`` costs): docs/coco.md#installing-detectron2
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
LOCAL_VERSION = "0.7.2+purepy"
# Runtime requirements installed by name next to the repacked wheel (upstream detectron2's setup.py pins).
RUNTIME_REQUIREMENTS = ("fvcore>=0.1.5,<0.1.6", "iopath>=0.1.7,<0.1.10", "hydra-core>=1.1", "omegaconf>=2.1,<2.4",
                        "yacs>=0.1.8", "termcolor>=1.1", "tabulate", "cloudpickle", "pycocotools>=2.0.2",
                        "matplotlib", "tqdm>4.29.0", "tensorboard", "Pillow>=7.1", "timm",
                        # fvcore's CropTransform clips polygon masks with shapely: real COCO + LSJ needs it
                        "shapely")
INSTALL_HINT = ("detectron2 is not installed. Run `bash scripts/install_detectron2.sh` (PyPI only: repacks "
                "sal-detectron2 0.7.2 as pure Python) or build the official source; see eval/coco/install.py.")

_DROP = re.compile(r"^(tools/.*|detectron2/_C\..*\.(so|pyd))$")
_DROP_REQUIRES = re.compile(r"^Requires-Dist: (numpy|black)\b(?!.*extra ==)")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _rewrite_metadata(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("Version: "):
            line = f"Version: {LOCAL_VERSION}"
        elif _DROP_REQUIRES.match(line):
            continue  # numpy<2 is stale (the code runs on numpy 2); black is only for LazyConfig.to_py
        out.append(line)
        if line.startswith("Requires-Dist: Pillow"):
            # upstream's setup.py requires these; the sal wheel's metadata lost them
            out += ["Requires-Dist: fvcore<0.1.6,>=0.1.5", "Requires-Dist: iopath<0.1.10,>=0.1.7"]
    return "\n".join(out) + "\n"


def repack_wheel(src: str | Path, out_dir: str | Path, check_hash: bool = True) -> Path:
    """sal-detectron2's cp310 wheel -> a pure-Python ``py3-none-any`` wheel in ``out_dir`` (returned path).

    Drops the compiled ``detectron2/_C`` and the top-level ``tools`` package, marks the wheel purelib, rewrites
    METADATA (version ``0.7.2+purepy``, see docs/coco.md#installing-detectron2) and rebuilds RECORD. Python files
    are copied byte for byte.
    """
    src = Path(src)
    data = src.read_bytes()
    if check_hash and hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
        raise ValueError(f"{src}: sha256 {hashlib.sha256(data).hexdigest()} is not the pinned sal-detectron2 "
                         f"0.7.2 wheel ({WHEEL_SHA256})")
    old_info = "sal_detectron2-0.7.2.dist-info/"
    new_info = f"sal_detectron2-{LOCAL_VERSION}.dist-info/"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"sal_detectron2-{LOCAL_VERSION}-py3-none-any.whl"
    records: list[str] = []
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        if old_info + "METADATA" not in names or not any(n.startswith("detectron2/modeling/backbone/vit.py")
                                                         for n in names):
            raise ValueError(f"{src}: not the sal-detectron2 0.7.2 wheel (no {old_info}METADATA or ViT backbone)")
        for name in names:
            if _DROP.match(name) or name == old_info + "RECORD" or name.endswith("/"):
                continue
            payload = zin.read(name)
            if name.startswith(old_info):
                base = name[len(old_info):]
                text = payload.decode("utf-8")
                if base == "WHEEL":
                    text = re.sub(r"(?m)^Root-Is-Purelib: .*$", "Root-Is-Purelib: true", text)
                    text = re.sub(r"(?m)^Tag: .*$", "Tag: py3-none-any", text)
                elif base == "METADATA":
                    text = _rewrite_metadata(text)
                elif base == "top_level.txt":
                    text = "".join(f"{t}\n" for t in text.split() if t != "tools")
                payload = text.encode("utf-8")
                name = new_info + base
            zout.writestr(name, payload)
            records.append(f"{name},{_record_hash(payload)},{len(payload)}")
        records.append(f"{new_info}RECORD,,")
        zout.writestr(new_info + "RECORD", "\n".join(records) + "\n")
    return out


def require_detectron2():
    """Import detectron2 or raise ImportError with the install command (called before any expensive work)."""
    try:
        import detectron2  # noqa: F401
        from detectron2.modeling.backbone.vit import ViT  # noqa: F401
    except ImportError as e:
        from gmae.errors import MissingDependency

        raise MissingDependency(f"{INSTALL_HINT} ({e})") from e
    return detectron2


def check() -> int:
    """Import every detectron2 module eval.coco uses and build a tiny ROIAlign call; print a one-line summary."""
    require_detectron2()
    import importlib

    import detectron2
    import torch

    for mod in ("detectron2.config", "detectron2.engine", "detectron2.checkpoint", "detectron2.evaluation",
                "detectron2.data.datasets", "detectron2.modeling", "detectron2.solver", "detectron2.utils.events"):
        importlib.import_module(mod)
    from detectron2.layers import ROIAlign, batched_nms

    feat = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = ROIAlign((2, 2), 1.0, 0, aligned=True)(feat, torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]))
    keep = batched_nms(torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2.1]]), torch.tensor([0.9, 0.8]),
                       torch.tensor([0, 0]), 0.5)
    try:
        from detectron2 import _C  # noqa: F401
        compiled = "with _C"
    except ImportError:
        compiled = "pure Python (no _C)"
    print(f"detectron2 {detectron2.__version__} at {Path(detectron2.__file__).parent}: {compiled}; "
          f"ROIAlign {tuple(pooled.shape)}, nms kept {keep.tolist()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Repack sal-detectron2 as pure Python, or check the install.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("repack", help="cp310 wheel -> py3-none-any wheel")
    rp.add_argument("wheel")
    rp.add_argument("out_dir")
    sub.add_parser("check", help="import the detectron2 pieces eval.coco uses")
    sub.add_parser("requirements", help="print the runtime requirements, one per line")
    args = parser.parse_args(argv)
    if args.cmd == "repack":
        print(repack_wheel(args.wheel, args.out_dir))
        return 0
    if args.cmd == "requirements":
        print("\n".join(RUNTIME_REQUIREMENTS))
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
