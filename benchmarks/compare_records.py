"""Compare two results stores record by record, every field except provenance (time, commit, paths, hardware).

    python benchmarks/compare_records.py OLD/results.jsonl NEW/results.jsonl

Records are paired on what identifies a number (protocol, metric, model, mask ratio, variant, weights, split,
paste_visible, method, features); each pair is printed when any other field differs, then a count. Used to check
that a refactoring leaves every number the suite writes unchanged (e.g. two `gmae reproduce --preset smoke` runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROVENANCE = {"time", "git_commit", "checkpoint", "config", "config_file", "out_dir", "hardware", "data",
              "per_image_file", "result_file", "recon_dir"}
IDENTITY = ("protocol", "metric", "model", "mask_ratio", "variant", "weights", "split", "paste_visible", "method",
            "features")


def load(path: Path) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            key = tuple(str(rec.get(k)) for k in IDENTITY)
            out.setdefault(key, []).append({k: v for k, v in rec.items() if k not in PROVENANCE})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args(argv)
    old, new = load(args.old), load(args.new)
    same = differ = 0
    for key in sorted(set(old) | set(new)):
        name = [k for k in key if k != "None"]
        if key not in old or key not in new:
            print(f"only in {'new' if key not in old else 'old'}: {name}")
            differ += 1
            continue
        for a, b in zip(old[key], new[key]):
            if a == b:
                same += 1
                continue
            differ += 1
            changed = {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))
                       if a.get(k, "<absent>") != b.get(k, "<absent>")}
            print(f"differs: {name} {changed}")
    print(f"{same} records identical, {differ} differ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
