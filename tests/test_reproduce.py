"""`gmae reproduce`: the smoke preset end to end (what CI runs), step skipping, and the paper preset's scripts."""


import pytest

from gmae.cli import main
from gmae.results import PROTOCOLS, ResultsStore


@pytest.mark.slow
def test_smoke_preset_end_to_end_then_skips_finished_steps(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == 0
    records = ResultsStore(out).read()
    assert {r["protocol"] for r in records} == set(PROTOCOLS)  # a record from every protocol
    for r in records:
        assert r["hardware"] and r["time"] and r["model"]
    report = (out / "report" / "report.md").read_text()
    for title in ("Ablation: Maximum scale c", "Reconstruction: rFID and PSNR", "BSDS500 edges",
                  "Zero-shot figure-ground", "ImageNet fine-tune and COCO"):
        assert title in report
    assert (out / "report" / "figures" / "num_gaussians.png").exists()
    figures = {p.name for p in (out / "report" / "figures").glob("*.png")}
    assert any("recon" in f for f in figures) and any("layers" in f for f in figures)
    assert any("edge_hierarchy" in f for f in figures) and any("centres" in f for f in figures)

    # a second run skips every finished step and only rewrites the report
    capsys.readouterr()
    n_before = len(records)
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "pretrain_gmae: done, skipped" in log and "ran 1 step(s)" in log
    assert len(ResultsStore(out).read()) == n_before


def test_list_and_unknown_step(tmp_path, capsys):
    assert main(["reproduce", "--preset", "tiny", "--out", str(tmp_path), "--list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert any(line.endswith("pretrain_gmae_k64") for line in listed)
    assert any(line.endswith("linprobe_gmae_loss_masked_norm") for line in listed)
    assert main(["reproduce", "--preset", "smoke", "--out", str(tmp_path), "--only", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown step 'nope'" in err[0]


def test_tiny_figures_and_bsds_steps_are_eval_commands(tmp_path):
    import json

    from reports.reproduce import SMOKE, TINY, tiny_steps

    steps = {s.name: s for s in tiny_steps(tmp_path, TINY)}
    fig = steps["figures"].argv
    assert fig[:2] == ["eval", "figures"] and fig[fig.index("--checkpoint") + 1].endswith("gmae/checkpoint.pth")
    scale = json.loads(next(a for a in fig if a.startswith("scale_effect=")).partition("=")[2])
    assert list(scale) == ["c = 0.5", "c = 1", "c = 2"] and scale["c = 2"].endswith("gmae_scale2/checkpoint.pth")
    assert set(steps["figures"].needs) == {"pretrain_gmae", "pretrain_gmae_scale0.5", "pretrain_gmae_scale2"}
    bsds = steps["bsds_sobel"].argv  # --out is the output dir; the result is OUT/bsds.json
    assert bsds[bsds.index("--out") + 1] == str(tmp_path / "eval" / "sobel") and "--model-name" in bsds
    smoke = {s.name: s for s in tiny_steps(tmp_path, SMOKE)}
    assert not any(a.startswith("scale_effect=") for a in smoke["figures"].argv)
    assert smoke["figures"].needs == ("pretrain_gmae",)


def test_paper_preset_writes_chained_slurm_scripts(tmp_path):
    out = tmp_path / "paper"
    assert main(["reproduce", "--preset", "paper", "--out", str(out), "--data", "/datasets/imagenet",
                 "--coco", "/datasets/coco", "--bsds", "/datasets/bsds", "--nodes", "8"]) == 0
    pre = (out / "slurm" / "pretrain_gmae_vit_b16_400ep.sbatch").read_text()
    assert "#SBATCH --nodes=8" in pre and "torch.distributed.run --nnodes=8 --nproc_per_node=8" in pre
    assert "--config pretrain/gmae_vit_b16_400ep --data /datasets/imagenet" in pre
    for ablation in ("scale0.5", "scale2", "mask0.7", "mask0.8", "loss_all", "loss_masked_norm", "k64", "k128", "k512"):
        assert (out / "slurm" / f"linprobe_gmae_vit_b16_400ep_{ablation}.sbatch").exists()
    submit = (out / "slurm" / "submit_all.sh").read_text()
    assert "submit linprobe_gmae_vit_b16_400ep afterok pretrain_gmae_vit_b16_400ep\n" in submit
    assert "submit report afterany " in submit and "-m gmae report" in (out / "slurm" / "report.sbatch").read_text()
    # reconstruction rows: GMAE and a plain-pixel MAE (the norm-pix MAE-400 serves the representation rows)
    assert "submit recon_mae_vit_b16_400ep_pixel afterok pretrain_mae_vit_b16_400ep_pixel\n" in submit
    assert not (out / "slurm" / "recon_mae_vit_b16_400ep.sbatch").exists()
    assert (out / "slurm" / "finetune_mae_vit_b16_400ep.sbatch").exists()


def test_paper_preset_needs_data(tmp_path, capsys):
    assert main(["reproduce", "--preset", "paper", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0]


def test_cli_help_and_errors(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for cmd in ("pretrain", "export", "reproduce", "report", "linprobe", "finetune", "knn", "coco", "recon",
                "figure-ground", "edges", "bsds", "classic-edges", "layers", "figures", "tiny"):
        assert cmd in text
    assert main(["nope"]) == 2
    assert main(["eval", "nope"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0 and "key=value" in capsys.readouterr().out
