"""The paper's tables from a results store: the paper's value, ours, the difference, and where ours came from.

Every evaluation record is tied to the pretraining run that produced its checkpoint (joined on the checkpoint's
sha256, then its path), so a linear-probe number lands in the row of the ablation it belongs to. When several
records fit one cell the newest wins; the ``source`` column names data, model, epochs, hardware and commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from gmae.results import read_stores
from reports import paper

VARIANT_KEYS = ("family", "pt_model", "num_gaussians", "max_scale", "mask_ratio_pt", "loss_type", "epochs",
                "pt_data", "img_size")
PAPER_DEFAULTS = {"max_scale": 1.0, "mask_ratio_pt": 0.75, "loss_type": "masked"}


def _family(model: str | None) -> str | None:
    if not model:
        return None
    m = model.lower()
    for fam in ("gmae", "mae"):
        if m.startswith(fam):
            return fam
    return m


def _variant_from_config(cfg: dict) -> dict[str, Any]:
    model, optim, data = cfg.get("model", {}), cfg.get("optim", {}), cfg.get("data", {})
    k = model.get("num_gaussians")
    family = _family(model.get("name"))
    return {
        "family": family, "pt_model": model.get("name"),
        "num_gaussians": k if k is not None else (256 if family == "gmae" else None),
        "max_scale": model.get("max_scale") if model.get("max_scale") is not None else (1.0 if family == "gmae" else None),
        "mask_ratio_pt": model.get("mask_ratio"), "loss_type": model.get("loss_type"),
        "epochs": optim.get("epochs"), "pt_data": data.get("root"), "img_size": data.get("img_size"),
    }


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record with its pretraining variant attached (columns: VARIANT_KEYS + record fields)."""
    records = list(records)
    by_sha, by_path = {}, {}
    for r in records:
        if r.get("protocol") == "pretrain" and isinstance(r.get("config"), dict):
            ck = r.get("checkpoint") or {}
            v = _variant_from_config(r["config"])
            if ck.get("sha256"):
                by_sha[ck["sha256"]] = v
            if ck.get("path"):
                by_path[str(Path(ck["path"]).resolve())] = v
    rows = []
    for r in records:
        ck = r.get("checkpoint") or {}
        if not isinstance(ck, dict):
            ck = {"path": str(ck)}
        if r.get("protocol") == "pretrain" and isinstance(r.get("config"), dict):
            v = _variant_from_config(r["config"])
        else:
            v = by_sha.get(ck.get("sha256")) or by_path.get(str(Path(ck["path"]).resolve()) if ck.get("path") else "")
            v = dict(v) if v else {"family": _family(r.get("model")), "pt_model": r.get("model")}
        row = {k: v.get(k) for k in VARIANT_KEYS}
        row.update({
            "protocol": r.get("protocol"), "metric": r.get("metric"), "value": r.get("value"),
            "model": r.get("model"), "checkpoint": ck.get("path"), "sha256": ck.get("sha256"),
            "data": r.get("data"), "hardware": r.get("hardware"), "git_commit": r.get("git_commit"),
            "time": r.get("time"), "mask_ratio": r.get("mask_ratio"), "variant": r.get("variant"),
            # which weights an accuracy is of (final / ema), and whether a reconstruction borrowed GT statistics
            "weights": r.get("weights"), "denorm_uses_gt_stats": r.get("denorm_uses_gt_stats"),
        })
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(VARIANT_KEYS) + ["protocol", "metric", "value", "model", "checkpoint",
                                                          "sha256", "data", "hardware", "git_commit", "time",
                                                          "mask_ratio", "variant", "weights",
                                                          "denorm_uses_gt_stats"])
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def _source(row: pd.Series | None) -> str:
    if row is None:
        return "not run"
    parts = [str(row.get("pt_model") or row.get("model"))]
    if row.get("epochs") is not None and not _isnan(row.get("epochs")):
        parts.append(f"{int(row['epochs'])} ep")
    if row.get("data"):
        parts.append(f"data {Path(str(row['data'])).name}")
    if row.get("hardware"):
        parts.append(str(row["hardware"]).split(",")[0])
    if row.get("git_commit"):
        parts.append(f"@{str(row['git_commit'])[:8]}")
    return ", ".join(parts)


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def latest(df: pd.DataFrame, **where) -> pd.Series | None:
    """The newest record matching every ``column=value`` (None for a missing value matches NaN/None)."""
    sel = df
    for col, val in where.items():
        if col not in sel.columns:
            return None
        if val is None:
            sel = sel[sel[col].isna()]
        elif isinstance(val, float):
            sel = sel[pd.to_numeric(sel[col], errors="coerce").sub(val).abs() < 1e-9]
        else:
            sel = sel[sel[col] == val]
    if sel.empty:
        return None
    return sel.iloc[-1]


def accuracy(df: pd.DataFrame, protocol: str) -> pd.Series | None:
    """The newest top-1 record of ``protocol``: the best evaluated epoch (``best_top1``, what MAE reports) when
    the run recorded one, else the final epoch's ``top1``; EMA-weight records only when nothing else exists."""
    plain = df[df["weights"] != "ema"] if "weights" in df.columns else df
    for pool in (plain, df):
        for metric in ("best_top1", "top1"):
            row = latest(pool, protocol=protocol, metric=metric)
            if row is not None:
                return row
    return None


def _value(row: pd.Series | None) -> float | None:
    return None if row is None or row["value"] is None or _isnan(row["value"]) else float(row["value"])


def _diff(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


# the setting every number of the paper's tables comes from; a difference is shown only for runs in it
PAPER_SETTING = {"gmae": ("gmae_vit_base_patch16", 400), "mae": ("mae_vit_base_patch16", 400)}


def comparable(row: pd.Series | None) -> bool:
    """Whether a record comes from the paper's setting (ViT-B/16, 400 epochs), so 'ours - paper' means something."""
    if row is None:
        return False
    want = PAPER_SETTING.get(row.get("family"))
    return want is not None and row.get("pt_model") == want[0] and row.get("epochs") == want[1]


def _cdiff(row: pd.Series | None, theirs: float | None) -> float | None:
    return _diff(_value(row), theirs) if comparable(row) else None


@dataclass
class Table:
    name: str
    title: str
    frame: pd.DataFrame
    note: str = ""


ABLATION_KEYS = ("num_gaussians", "max_scale", "mask_ratio_pt", "loss_type")


def _reference_values(gm: pd.DataFrame) -> dict[str, Any]:
    """The sweep's base setting: per ablation key, the value most GMAE pretraining runs share (an ablation
    sweep varies one key at a time), ties broken in favour of the paper's default."""
    runs = gm[gm["protocol"] == "pretrain"]
    runs = runs if not runs.empty else gm
    ref: dict[str, Any] = {}
    for key in ABLATION_KEYS:
        counts = runs.drop_duplicates(subset=["sha256", "checkpoint"])[key].dropna().value_counts()
        if counts.empty:
            continue
        top = counts[counts == counts.max()].index.tolist()
        default = PAPER_DEFAULTS.get(key, 256 if key == "num_gaussians" else None)
        ref[key] = default if default in top else top[0]
    return ref


def _matches(frame: pd.DataFrame, key: str, value: Any) -> pd.Series:
    if isinstance(value, str):
        return frame[key] == value
    return (pd.to_numeric(frame[key], errors="coerce") - value).abs() < 1e-9


def _gmae_default_rows(df: pd.DataFrame, free_key: str) -> pd.DataFrame:
    """GMAE records whose run equals the sweep's base setting in every ablation key except ``free_key``."""
    gm = df[df["family"] == "gmae"]
    for key, value in _reference_values(gm).items():
        if key != free_key:
            gm = gm[_matches(gm, key, value)]
    return gm


def ablation_table(df: pd.DataFrame, axis: str) -> Table:
    spec = paper.ABLATIONS[axis]
    key = "mask_ratio_pt" if spec["key"] == "mask_ratio" else spec["key"]
    pool = _gmae_default_rows(df, key)
    rows = []
    for value, p_ft, p_lin in spec["rows"]:
        sel = pool[_matches(pool, key, value)]
        ft = accuracy(sel, "finetune")
        lin = accuracy(sel, "linprobe")
        rows.append({spec["title"]: f"{value}{' (default)' if value == spec['default'] else ''}",
                     "paper ft": p_ft, "ours ft": _value(ft), "diff ft": _cdiff(ft, p_ft),
                     "paper lin": p_lin, "ours lin": _value(lin), "diff lin": _cdiff(lin, p_lin),
                     "source": _source(ft if ft is not None else lin)})
    return Table(f"ablation_{axis}", f"Ablation: {spec['title']} (ImageNet top-1)", pd.DataFrame(rows),
                 note=f"paper: {paper.GMAE_PAPER}; ours: best evaluated epoch (best_top1, as MAE reports), else the "
                      f"final epoch; diff only for our runs in that setting (tiny presets: trends only)")


def _standard_ours(sel: pd.DataFrame) -> dict[str, Any]:
    ft = accuracy(sel, "finetune")
    box = latest(sel, protocol="coco", metric="ap_box")
    mask = latest(sel, protocol="coco", metric="ap_mask")
    return {"ours ft": _value(ft), "ours AP box": _value(box), "ours AP mask": _value(mask),
            "source": _source(next((r for r in (ft, box, mask) if r is not None), None))}


def standard_table(df: pd.DataFrame) -> Table:
    """Paper rows get our numbers only from a run of the same family and epochs; our other runs (e.g. the tiny
    presets) get rows of their own, so a 20-epoch tiny run is never shown as a 400-epoch number."""
    rows, used = [], set()
    evals = df[df["protocol"].isin(["finetune", "coco"])]
    for method, p_ft, p_box, p_mask, ours_key in paper.STANDARD_TASKS:
        row = {"method": method, "paper ft": p_ft, "paper AP box": p_box, "paper AP mask": p_mask,
               "ours ft": None, "ours AP box": None, "ours AP mask": None, "source": ""}
        if ours_key is not None:
            fam, epochs = ours_key
            sel = evals[(evals["family"] == fam) & (evals["epochs"] == epochs)]
            if fam == "gmae":
                sel = _gmae_default_rows(sel, "")
            if not sel.empty:
                row.update(_standard_ours(sel))
                used.add((fam, epochs))
        rows.append(row)
    for fam in ("mae", "gmae"):
        sel_f = evals[evals["family"] == fam]
        if fam == "gmae":
            sel_f = _gmae_default_rows(sel_f, "")
        for epochs in sorted(sel_f["epochs"].dropna().unique()):
            if (fam, epochs) in used:
                continue
            sel = sel_f[sel_f["epochs"] == epochs]
            model = sel.iloc[-1]["pt_model"]
            rows.append({"method": f"{fam.upper()} {int(epochs)} ep (ours: {model})", "paper ft": None,
                         "paper AP box": None, "paper AP mask": None, **_standard_ours(sel)})
    return Table("standard_tasks", "ImageNet fine-tune and COCO detection (ViTDet Mask R-CNN)", pd.DataFrame(rows),
                 note="paper rows from the GMAE paper; ours fill a paper row only for the same model family and epochs")


def num_gaussians_table(df: pd.DataFrame) -> Table:
    pool = _gmae_default_rows(df, "num_gaussians")
    ks = sorted(set(paper.NUM_GAUSSIANS) | set(int(k) for k in pool["num_gaussians"].dropna().unique()))
    rows = []
    for k in ks:
        sel = pool[pool["num_gaussians"] == k]
        ft = accuracy(sel, "finetune")
        lin = accuracy(sel, "linprobe")
        knn = latest(sel, protocol="knn", metric="top1")
        psnr = latest(sel, protocol="recon", metric="psnr", mask_ratio=0.0)
        rows.append({"k": k, "ours ft": _value(ft), "ours lin": _value(lin), "ours knn": _value(knn),
                     "ours PSNR (mask 0)": _value(psnr),
                     "source": _source(next((r for r in (ft, lin, knn, psnr) if r is not None), None))})
    return Table("num_gaussians", "Number of Gaussians k", pd.DataFrame(rows), note=paper.NUM_GAUSSIANS_TREND)


def reconstruction_table(df: pd.DataFrame) -> Table:
    rows = []
    for ratio in (0.0, 0.75):
        for fam in ("gmae", "mae"):
            sel = df[df["family"] == fam]
            if fam == "gmae":
                sel = _gmae_default_rows(sel, "")
            elif "denorm_uses_gt_stats" in sel.columns:
                # a plain-pixel MAE (mae_*_pixel) when there is one: a norm-pix MAE's image borrows each patch's
                # mean and variance from the ground truth
                plain = sel[sel["denorm_uses_gt_stats"] != True]  # noqa: E712 (NaN counts as plain)
                sel = plain if not plain[plain["protocol"] == "recon"].empty else sel
            rfid = latest(sel, protocol="recon", metric="rfid", mask_ratio=ratio)
            psnr = latest(sel, protocol="recon", metric="psnr", mask_ratio=ratio)
            ref = paper.RECONSTRUCTION[fam] if ratio == 0.0 else {}
            row = rfid if rfid is not None else psnr
            label = fam.upper()
            if row is not None and row.get("denorm_uses_gt_stats") is True:
                label += " (norm-pix; patch mean/var from the ground truth)"
            rows.append({"model": label, "mask ratio": ratio,
                         "paper rFID": ref.get("rfid"), "ours rFID": _value(rfid),
                         "paper PSNR": ref.get("psnr"), "ours PSNR": _value(psnr),
                         "diff PSNR": _cdiff(psnr, ref.get("psnr")),
                         "source": _source(rfid if rfid is not None else psnr)})
    return Table("reconstruction", "Reconstruction: rFID and PSNR", pd.DataFrame(rows),
                 note="paper: ImageNet val (50k), mask ratio 0; rFID over a few images is not comparable to 50k; "
                      "MAE rows come from a plain-pixel MAE (mae_vit_b16_400ep_pixel) when one was evaluated")


def bsds_table(df: pd.DataFrame) -> Table:
    rows = []
    sel = df[df["protocol"] == "bsds_edges"]
    for model in sel["model"].dropna().unique():
        m = sel[sel["model"] == model]
        vals = {k: _value(latest(m, metric=k)) for k in ("ods", "ois", "ap", "r50")}
        rows.append({"method": f"{model} (ours, measured)", **vals, "source": _source(latest(m, metric="ods"))})
    for name, ods, ois, ap, r50 in paper.BSDS_PUBLISHED:
        rows.append({"method": name, "ods": ods, "ois": ois, "ap": ap, "r50": r50, "source": "published"})
    return Table("bsds_edges", "BSDS500 edges (ODS / OIS / AP / R50)", pd.DataFrame(rows),
                 note="measured rows use this project's evaluator (max dist 0.0075, 99 thresholds)")


def figure_ground_table(df: pd.DataFrame) -> Table:
    rows = []
    sel = df[df["protocol"] == "figure_ground"]
    keys = sel[["model", "data", "variant"]].drop_duplicates().itertuples(index=False)
    for model, data, variant in keys:
        m = sel[(sel["model"] == model) & (sel["data"] == data)]
        m = m[m["variant"].isna()] if variant is None or _isnan(variant) else m[m["variant"] == variant]
        vals = {k: _value(latest(m, metric=k)) for k in ("iou", "pixel_acc", "max_f")}
        label = model if variant is None or _isnan(variant) else f"{model} [{variant}]"
        rows.append({"method": label, "data": Path(str(data)).name if data else None, **vals,
                     "source": _source(latest(m, metric="iou"))})
    return Table("figure_ground", "Zero-shot figure-ground segmentation", pd.DataFrame(
        rows, columns=["method", "data", "iou", "pixel_acc", "max_f", "source"]),
        note="IoU and pixel accuracy at 0.5; max F-beta over 255 thresholds with beta^2 = 0.3")


def all_tables(df: pd.DataFrame) -> list[Table]:
    return [ablation_table(df, "max_scale"), ablation_table(df, "mask_ratio"), ablation_table(df, "loss_type"),
            standard_table(df), num_gaussians_table(df), reconstruction_table(df), bsds_table(df),
            figure_ground_table(df)]


def _fmt(v) -> str:
    if v is None or _isnan(v):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def to_markdown(table: Table) -> str:
    cols = list(table.frame.columns)
    lines = [f"### {table.title}", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    cols = list(table.frame.columns)
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    lines = [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule",
             " & ".join(esc(c) for c in cols) + r" \\", r"\midrule"]
    for _, row in table.frame.iterrows():
        lines.append(" & ".join(esc(_fmt(row[c])) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return f"% {table.title}\n" + "\n".join(lines) + "\n"


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    return records_frame(read_stores(paths))
