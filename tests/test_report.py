"""The report from a synthetic results store equals the expected tables."""

import math

import pandas as pd
import pytest

from gmae.results import ResultsStore, make_record
from reports.report import write_report
from reports.tables import all_tables, load_frame, to_markdown


def pretrain_cfg(name="gmae_vit_base_patch16", k=256, c=1.0, mask=0.75, loss="masked", epochs=400):
    return {"model": {"name": name, "num_gaussians": k, "max_scale": c, "mask_ratio": mask, "loss_type": loss,
                      "kwargs": {}},
            "optim": {"epochs": epochs}, "data": {"root": "/data/imagenet", "img_size": 224}}


def ckpt(i):
    return {"path": f"/runs/r{i}/checkpoint.pth", "sha256": f"{i:064x}"}


@pytest.fixture()
def store(tmp_path):
    s = ResultsStore(tmp_path / "a")
    s2 = ResultsStore(tmp_path / "b")  # a second store, merged by the report
    runs = {
        1: pretrain_cfg(), 2: pretrain_cfg(c=0.5), 3: pretrain_cfg(mask=0.8), 4: pretrain_cfg(loss="all"),
        5: pretrain_cfg(k=64), 6: pretrain_cfg(name="mae_vit_base_patch16", k=None, c=None), 7: pretrain_cfg(c=2.0),
    }
    for i, cfg in runs.items():
        s.append(make_record("pretrain", "loss", 0.1, model=cfg["model"]["name"], checkpoint=ckpt(i), config=cfg))
    ev = [  # (run, protocol, metric, value, extra)
        (1, "finetune", "top1", 83.0, {}), (1, "linprobe", "top1", 60.0, {}), (2, "finetune", "top1", 82.0, {}),
        (2, "linprobe", "top1", 59.5, {}), (3, "linprobe", "top1", 61.0, {}), (4, "finetune", "top1", 81.0, {}),
        (5, "linprobe", "top1", 55.0, {}), (5, "knn", "top1", 40.0, {}), (1, "knn", "top1", 45.0, {}),
        (6, "finetune", "top1", 83.1, {}), (6, "coco", "ap_box", 50.0, {}), (6, "coco", "ap_mask", 44.0, {}),
        (1, "coco", "ap_box", 49.0, {}), (1, "coco", "ap_mask", 43.5, {}),
        (1, "recon", "rfid", 90.0, {"mask_ratio": 0.0}), (1, "recon", "psnr", 18.0, {"mask_ratio": 0.0}),
        (6, "recon", "rfid", 99.0, {"mask_ratio": 0.0}), (6, "recon", "psnr", 18.5, {"mask_ratio": 0.0}),
        (1, "recon", "psnr", 12.0, {"mask_ratio": 0.75}),
        (1, "figure_ground", "iou", 0.5, {}), (1, "figure_ground", "iou", 0.7, {"variant": "oracle"}),
    ]
    for i, proto, metric, value, extra in ev:
        model = runs[i]["model"]["name"]
        s2.append(make_record(proto, metric, value, model=model, checkpoint=ckpt(i), config={}, data="val", **extra))
    # an older linear-probe number for run 1: the newer one (above) must win
    old = make_record("linprobe", "top1", 10.0, model="gmae_vit_base_patch16", checkpoint=ckpt(1), config={})
    old["time"] = "2000-01-01T00:00:00+00:00"
    s2.append(old)
    for m, ods in (("canny", 0.55), ("gmae_vit_base_patch16", 0.6)):
        for metric, v in (("ods", ods), ("ois", ods + 0.02), ("ap", ods - 0.05), ("r50", 0.8)):
            s2.append(make_record("bsds_edges", metric, v, model=m, data="bsds500"))
    return [tmp_path / "a", tmp_path / "b"]


def by_name(tables):
    return {t.name: t.frame for t in tables}


def cell(frame, key_col, key, col):
    labels = frame[key_col].astype(str)
    row = frame[(labels == str(key)) | labels.str.startswith(f"{key} (")]
    assert len(row) == 1, (key, frame)
    v = row.iloc[0][col]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def test_tables_from_synthetic_store(store):
    t = by_name(all_tables(load_frame(store)))
    scale = t["ablation_max_scale"]
    assert cell(scale, "Maximum scale c", "0.5", "ours ft") == 82.0
    assert cell(scale, "Maximum scale c", "0.5", "paper ft") == 82.7
    assert cell(scale, "Maximum scale c", "1.0", "ours lin") == 60.0  # newest record wins over the old 10.0
    assert cell(scale, "Maximum scale c", "1.0", "diff lin") == pytest.approx(60.0 - 61.9)
    assert cell(scale, "Maximum scale c", "2.0", "ours ft") is None  # run 7 has no evaluation
    # a run outside the paper's setting (here: 20 epochs) gets no difference column
    from reports.tables import ablation_table, records_frame
    from gmae.results import ResultsStore as RS

    recs = [r for root in store for r in RS(root).read()]
    for r in recs:
        if r["protocol"] == "pretrain":
            r["config"]["optim"]["epochs"] = 20
    short = ablation_table(records_frame(recs), "max_scale").frame
    assert cell(short, "Maximum scale c", "1.0", "ours lin") == 60.0
    assert cell(short, "Maximum scale c", "1.0", "diff lin") is None
    mask = t["ablation_mask_ratio"]
    assert cell(mask, "Mask ratio", "0.8", "ours lin") == 61.0 and cell(mask, "Mask ratio", "0.7", "ours lin") is None
    loss = t["ablation_loss_type"]
    assert cell(loss, "Loss", "all", "ours ft") == 81.0 and cell(loss, "Loss", "masked_norm", "ours ft") is None
    std = t["standard_tasks"]
    assert cell(std, "method", "MAE 400 ep", "ours ft") == 83.1
    assert cell(std, "method", "MAE 400 ep", "ours AP box") == 50.0
    assert cell(std, "method", "MAE 1600 ep", "ours ft") is None  # a 400-epoch run never fills the 1600 row
    assert cell(std, "method", "GMAE 400 ep", "ours AP mask") == 43.5
    assert cell(std, "method", "GMAE 400 ep", "paper ft") == 83.2
    assert cell(std, "method", "DINO", "ours ft") is None
    k = t["num_gaussians"]
    assert cell(k, "k", 64, "ours lin") == 55.0 and cell(k, "k", 64, "ours knn") == 40.0
    assert cell(k, "k", 256, "ours knn") == 45.0 and cell(k, "k", 512, "ours lin") is None
    rec = t["reconstruction"]
    g0 = rec[(rec["model"] == "GMAE") & (rec["mask ratio"] == 0.0)].iloc[0]
    assert (g0["ours rFID"], g0["paper rFID"], g0["ours PSNR"]) == (90.0, 89.45, 18.0)
    g75 = rec[(rec["model"] == "GMAE") & (rec["mask ratio"] == 0.75)].iloc[0]
    assert g75["ours PSNR"] == 12.0 and pd.isna(g75["paper PSNR"])
    m0 = rec[(rec["model"] == "MAE") & (rec["mask ratio"] == 0.0)].iloc[0]
    assert m0["ours rFID"] == 99.0
    bsds = t["bsds_edges"]
    assert cell(bsds, "method", "canny", "ods") == 0.55
    assert cell(bsds, "method", "HED", "ods") == 0.788
    fg = t["figure_ground"]
    assert cell(fg, "method", "gmae_vit_base_patch16 [oracle]", "iou") == 0.7
    assert fg[fg["method"] == "gmae_vit_base_patch16"].iloc[0]["iou"] == 0.5


def test_write_report_outputs(store, tmp_path):
    out = tmp_path / "report"
    write_report(store, out)
    md = (out / "report.md").read_text()
    assert "Ablation: Maximum scale c" in md and "| 0.5 |" in md
    for name in ("ablation_max_scale", "standard_tasks", "bsds_edges"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{name}.{ext}").exists()
    csv = pd.read_csv(out / "tables" / "ablation_max_scale.csv")
    assert csv["ours ft"].tolist()[:2] == [82.0, 83.0]
    assert (out / "figures" / "num_gaussians.png").exists()
    assert "\\begin{tabular}" in (out / "tables" / "standard_tasks.tex").read_text()


def test_markdown_marks_missing_values():
    from reports.tables import Table

    md = to_markdown(Table("x", "X", pd.DataFrame([{"a": 1.5, "b": None}])))
    assert "| 1.50 | - |" in md


def test_report_shows_the_best_epoch_and_a_plain_pixel_mae(tmp_path):
    """Accuracy cells take best_top1 (what MAE reports) over the final top1, and the model's own weights over EMA;
    the MAE reconstruction row comes from a plain-pixel MAE when one was evaluated, else names the norm-pix one."""
    s = ResultsStore(tmp_path)
    gmae, mae, pixel = pretrain_cfg(), pretrain_cfg(name="mae_vit_base_patch16", k=None, c=None), \
        pretrain_cfg(name="mae_vit_base_patch16", k=None, c=None)
    for i, cfg in ((1, gmae), (2, mae), (3, pixel)):
        s.append(make_record("pretrain", "loss", 0.1, model=cfg["model"]["name"], checkpoint=ckpt(i), config=cfg))
    rows = [(1, "linprobe", "top1", 60.0, {}), (1, "linprobe", "best_top1", 61.5, {"best_epoch": 70}),
            (1, "finetune", "top1", 83.0, {"weights": "final"}), (1, "finetune", "best_top1", 83.3,
                                                                   {"weights": "final"}),
            (1, "finetune", "top1", 83.9, {"weights": "ema"}), (1, "finetune", "best_top1", 84.0, {"weights": "ema"}),
            (2, "recon", "psnr", 30.0, {"mask_ratio": 0.0, "denorm_uses_gt_stats": True}),
            (3, "recon", "psnr", 18.5, {"mask_ratio": 0.0, "denorm_uses_gt_stats": False})]
    for i, proto, metric, value, extra in rows:
        model = "gmae_vit_base_patch16" if i == 1 else "mae_vit_base_patch16"
        s.append(make_record(proto, metric, value, model=model, checkpoint=ckpt(i), config={}, data="val", **extra))
    t = by_name(all_tables(load_frame([tmp_path])))
    scale = t["ablation_max_scale"]
    assert cell(scale, "Maximum scale c", "1.0", "ours lin") == 61.5
    assert cell(scale, "Maximum scale c", "1.0", "ours ft") == 83.3  # the model's weights, not the EMA's 84.0
    m0 = t["reconstruction"]
    assert m0[(m0["model"] == "MAE") & (m0["mask ratio"] == 0.0)].iloc[0]["ours PSNR"] == 18.5

    only_norm = ResultsStore(tmp_path / "n")
    only_norm.append(make_record("pretrain", "loss", 0.1, model="mae_vit_base_patch16", checkpoint=ckpt(2),
                                 config=mae))
    only_norm.append(make_record("recon", "psnr", 30.0, model="mae_vit_base_patch16", checkpoint=ckpt(2), config={},
                                 data="val", mask_ratio=0.0, denorm_uses_gt_stats=True))
    rec = by_name(all_tables(load_frame([tmp_path / "n"])))["reconstruction"]
    row = rec[rec["model"].str.startswith("MAE (norm-pix") & (rec["mask ratio"] == 0.0)]
    assert len(row) == 1 and row.iloc[0]["ours PSNR"] == 30.0
