"""BSDS500 edge benchmark: thinning, NMS, pixel correspondence, aggregation, CLI, and a pyEdgeEval cross-check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from gmae.data.bsds import ground_truth_mat_bytes, load_gt_boundaries

from eval import bsds_benchmark
from eval.edge_nms import edge_nms, edge_orientation, thin, tri_smooth


def _radius_to_max_dist(shape, radius):
    return radius / math.hypot(*shape)


# ============================================================================================ thinning


def _random_masks(rng, n):
    for i in range(n):
        h, w = rng.integers(3, 48, 2)
        kind = i % 4
        if kind == 0:
            m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        elif kind == 1:
            m = ndi.binary_dilation(rng.random((h, w)) < 0.1, iterations=int(rng.integers(1, 3)))
        elif kind == 2:
            m = ndi.gaussian_filter(rng.random((h, w)), 1.5) > 0.5
        else:
            m = np.ones((h, w), bool)
            m[rng.random((h, w)) < 0.03] = False
        yield m


def test_thin_matches_skimage_on_random_masks():
    from skimage.morphology import thin as sk_thin

    rng = np.random.default_rng(0)
    for i, m in enumerate(_random_masks(rng, 160)):
        it = None if i % 5 else int(rng.integers(1, 4))
        np.testing.assert_array_equal(thin(m, it), sk_thin(m, it), err_msg=f"mask {i}, max_iter={it}")


def test_thin_tables_equal_skimage_guo_hall_tables():
    # Same bit order (E, NE, N, NW, W, SW, S, SE): our tables built from the paper's conditions must equal
    # scikit-image's (which reproduce MATLAB's bwmorph 'thin').
    from skimage.morphology._skeletonize import G123_LUT, G123P_LUT

    from eval.edge_nms import _DELETE_1, _DELETE_2

    np.testing.assert_array_equal(_DELETE_1, G123_LUT.astype(bool))
    np.testing.assert_array_equal(_DELETE_2, G123P_LUT.astype(bool))


def test_thin_keeps_lines_and_reduces_blobs():
    m = np.zeros((20, 20), bool)
    m[5, 2:15] = True          # a 1-px line is already thin
    m[10:15, 3:12] = True      # a 5 x 9 blob thins to a line
    out = thin(m)
    assert out[5, 2:15].all()
    blob = out[10:15, 3:12]
    assert 0 < blob.sum() <= 9 and blob.any(axis=0).sum() >= 5


# ============================================================================================ NMS


def test_nms_keeps_one_pixel_ridge_of_blurred_line():
    e = np.zeros((40, 50))
    e[:, 24] = 1.0
    e = ndi.gaussian_filter(e, (0, 2.0))
    out = edge_nms(e)
    inner = out[6:-6, 6:-6]
    # One survivor per row, in the line's column.
    assert (np.count_nonzero(inner, axis=1) == 1).all()
    assert (np.argmax(inner, axis=1) + 6 == 24).all()


def test_nms_border_ramp():
    e = np.zeros((30, 30))
    e[:, 15] = 1.0  # vertical line crossing the top and bottom borders
    out = edge_nms(e, presmooth=0)
    col = out[:, 15]
    np.testing.assert_allclose(col[:5], np.arange(5) / 5, atol=1e-12)
    np.testing.assert_allclose(col[-5:], np.arange(5)[::-1] / 5, atol=1e-12)
    np.testing.assert_allclose(col[5:-5], 1.0)


def test_nms_matches_pyedgeeval_core():
    pytest.importorskip("pyEdgeEval")
    from pyEdgeEval._lib import nms as pe_nms
    from pyEdgeEval.preprocess import fast_nms
    from pyEdgeEval.preprocess.nms.toolbox import conv_tri

    rng = np.random.default_rng(3)
    pred, _, _ = bsds_benchmark.synthetic_image(rng, 60, 80, 2, n_regions=8)
    e = pred / 255.0
    np.testing.assert_allclose(tri_smooth(e, 1), conv_tri(e, 1), atol=1e-12)
    np.testing.assert_allclose(tri_smooth(e, 4), conv_tri(e, 4), atol=1e-12)
    smooth = tri_smooth(e, 1)
    o = edge_orientation(smooth)
    np.testing.assert_allclose(edge_nms(e, orientation=o), pe_nms(smooth, o, r=1, s=5, m=1.01), atol=1e-12)
    # Whole pipeline: pyEdgeEval replaces Oxx == 0 by 1e-5 where MATLAB adds 1e-5; only a few pixels may differ.
    ours, theirs = edge_nms(e) > 0, fast_nms(e) > 0
    assert np.count_nonzero(ours != theirs) <= 0.01 * np.count_nonzero(theirs)


# ============================================================================================ matching


def _thin_gt(rng, shape=(60, 80)):
    """A thin-invariant GT (so a perfect prediction survives the benchmark's thinning unchanged)."""
    _, _, bds = bsds_benchmark.synthetic_image(rng, *shape, 1, n_regions=6)
    return thin(bds[0])


def test_perfect_prediction_scores_one():
    gt = _thin_gt(np.random.default_rng(0))
    counts = bsds_benchmark.evaluate_image(gt.astype(float), [gt])
    assert (counts[:, 0] == gt.sum()).all() and (counts[:, 2] == counts[:, 3]).all()
    res = bsds_benchmark.summarize(bsds_benchmark.thresholds_for(99), counts[None])
    assert res["ods"] == pytest.approx(1.0) and res["ois"] == pytest.approx(1.0)


def test_empty_prediction_scores_zero():
    gt = _thin_gt(np.random.default_rng(1))
    counts = bsds_benchmark.evaluate_image(np.zeros(gt.shape), [gt, gt])
    assert (counts[:, [0, 2, 3]] == 0).all() and (counts[:, 1] == 2 * gt.sum()).all()
    res = bsds_benchmark.summarize(bsds_benchmark.thresholds_for(99), counts[None])
    assert res["ods"] == 0 and res["ois"] == 0 and res["ap"] == 0


@pytest.mark.parametrize("shift, radius, expect_match", [(1, 1.5, True), (2, 2.0 + 1e-9, True),
                                                          (2, 2.0 - 1e-6, False), (3, 2.5, False)])
def test_shifted_line_matches_only_within_radius(shift, radius, expect_match):
    shape = (40, 40)
    gt = np.zeros(shape, bool)
    gt[5:35, 15] = True
    pred = np.zeros(shape)
    pred[5:35, 15 + shift] = 1.0
    counts = bsds_benchmark.evaluate_image(pred, [gt], [0.5], _radius_to_max_dist(shape, radius))
    n = gt.sum()
    assert counts[0].tolist() == ([n, n, n, n] if expect_match else [0, n, 0, n])


def test_hand_computed_counts():
    # radius 1.5 on a 16 x 16 image. A: row 5, cols 3..12. B: the same plus the pixel (12, 10).
    shape = (16, 16)
    a = np.zeros(shape, bool)
    a[5, 3:13] = True
    b = a.copy()
    b[12, 10] = True
    pred = np.zeros(shape)
    pred[6, 3:10] = 0.8          # 7 px at distance 1 from row 5
    pred[12, 9] = 0.3            # distance 1 from B's (12, 10)
    pred[11, 11] = 0.3           # distance sqrt(2) from it: loses the one-to-one match to (12, 9)
    pred[9, 3:6] = 0.3           # 3 px farther than 1.5 from every GT pixel
    md = _radius_to_max_dist(shape, 1.5)
    counts = bsds_benchmark.evaluate_image(pred, [a, b], [0.25, 0.5], md)
    # t=0.25: cntR = 7 (A) + 8 (B), sumR = 10 + 11, cntP = 7 + 1, sumP = 12. t=0.5: only the 7 px of row 6.
    assert counts.tolist() == [[15, 21, 8, 12], [14, 21, 7, 7]]
    matched, n = bsds_benchmark.correspond(pred >= 0.25, b, md)
    assert n == 8 and matched[12, 9] and not matched[11, 11] and matched[6, 3:10].all() and not matched[9].any()


def _brute_force(p_pts, g_pts, radius):
    """Dense reference: max-cardinality matching, then min total distance (outlier cost >> any path)."""
    d = np.hypot(*(p_pts[:, None, :] - g_pts[None, :, :]).transpose(2, 0, 1))
    big = 1e4
    cost = np.where(d <= radius, d - big, 0.0)  # 0 = "not matched"; every real pair is worth `big`
    r, c = linear_sum_assignment(cost)
    real = d[r, c] <= radius
    return int(real.sum()), float(d[r, c][real].sum())


def test_matching_is_max_cardinality_min_distance_against_brute_force():
    rng = np.random.default_rng(7)
    shape = (24, 24)
    radius = 2.3
    md = _radius_to_max_dist(shape, radius)
    for trial in range(25):
        pred = rng.random(shape) < rng.uniform(0.03, 0.2)
        gt = rng.random(shape) < rng.uniform(0.03, 0.2)
        if not pred.any() or not gt.any():
            continue
        matched, n = bsds_benchmark.correspond(pred, gt, md)
        p_pts, g_pts = np.argwhere(pred).astype(float), np.argwhere(gt).astype(float)
        k, best = _brute_force(p_pts, g_pts, radius)
        assert n == k, trial
        assert matched.sum() == k and not (matched & ~pred).any()
        # The matched predicted pixels admit a maximum matching of minimum total distance.
        k2, cost2 = _brute_force(np.argwhere(matched).astype(float), g_pts, radius)
        assert k2 == k and cost2 == pytest.approx(best, abs=1e-9), trial


def test_evaluate_image_is_deterministic():
    rng = np.random.default_rng(5)
    pred, _, bds = bsds_benchmark.synthetic_image(rng, 50, 70, 3, n_regions=8)
    e = pred / 255.0
    c1 = bsds_benchmark.evaluate_image(e, bds, 25, 0.03)
    c2 = bsds_benchmark.evaluate_image(e.copy(), [b.copy() for b in bds], 25, 0.03)
    np.testing.assert_array_equal(c1, c2)


# ============================================================================================ aggregation


def _ref_summary(t, counts):
    """Plain-loop transcription of edgesEvalDir's formulas (independent of bsds_benchmark.summarize's vectorisation)."""
    eps = np.finfo(float).eps

    def rpf(cr, sr, cp, sp):
        r, p = cr / max(eps, sr), cp / max(eps, sp)
        return r, p, 2 * p * r / max(eps, p + r)

    tot = counts.sum(0)
    rows = [rpf(*tot[k]) for k in range(len(t))]
    best = -1.0
    for j in range(1, len(t)):
        for a in np.linspace(0, 1, 100):
            r = rows[j][0] * a + rows[j - 1][0] * (1 - a)
            p = rows[j][1] * a + rows[j - 1][1] * (1 - a)
            f = 2 * p * r / max(eps, p + r)
            if f > best:
                best = f
    ois = np.zeros(4)
    for img in counts:
        fs = [rpf(*img[k])[2] for k in range(len(t))]
        ois += img[int(np.argmax(fs))]
    ois_f = rpf(*ois)[2]
    r = np.array([x[0] for x in rows])
    p = np.array([x[1] for x in rows])
    seen = {}
    for ri, pi in zip(r, p):
        seen.setdefault(ri, pi)
    ru = sorted(seen)
    ap = 0.0
    for q in np.linspace(0, 1, 101):
        if ru[0] <= q <= ru[-1]:
            j = max(i for i in range(len(ru)) if ru[i] <= q)
            if ru[j] == q or j == len(ru) - 1:
                ap += seen[ru[j]]
            else:
                w = (q - ru[j]) / (ru[j + 1] - ru[j])
                ap += seen[ru[j]] * (1 - w) + seen[ru[j + 1]] * w
    return best, ois_f, ap / 100


def test_aggregation_against_hand_computation():
    t = np.array([0.25, 0.5, 0.75])
    counts = np.array([
        [[8, 10, 8, 16], [6, 10, 6, 8], [2, 10, 2, 2]],   # image 1: best F at t=0.5 (R .6, P .75)
        [[6, 10, 6, 8], [3, 10, 3, 5], [1, 10, 1, 1]],    # image 2: best F at t=0.25 (R .6, P .75)
    ])
    res = bsds_benchmark.summarize(t, counts, ["a", "b"])
    # OIS by hand: cntR 6 + 6 = 12 of 20, cntP 12 of 16 -> R .6, P .75, F = 2 * .45 / 1.35 = 2/3.
    assert res["ois"] == pytest.approx(2 / 3)
    assert res["ois_recall"] == pytest.approx(0.6) and res["ois_precision"] == pytest.approx(0.75)
    # Dataset curve: R = [14, 9, 3] / 20, P = [14/24, 9/13, 1].
    np.testing.assert_allclose(res["curve"]["recall"], [0.7, 0.45, 0.15])
    np.testing.assert_allclose(res["curve"]["precision"], [14 / 24, 9 / 13, 1.0])
    ods, ois, ap = _ref_summary(t, counts.astype(float))
    assert res["ods"] == pytest.approx(ods, abs=1e-12)
    assert res["ois"] == pytest.approx(ois, abs=1e-12)
    assert res["ap"] == pytest.approx(ap, abs=1e-12)
    # R50: every precision >= 0.5, so it is the recall at the lowest precision (14/24): 0.7.
    assert res["r50"] == pytest.approx(0.7)
    assert [r["id"] for r in res["per_image"]] == ["a", "b"]
    assert [r["ois_index"] for r in res["per_image"]] == [1, 0]


def test_ods_interpolates_between_thresholds():
    # (R, P) = (1, .2) and (.2, 1): F = 1/3 at both thresholds, but on the segment P + R = 1.2 and F peaks at
    # R = P = .6; findBestRPF samples a = 0, 1/99, .., 1, so the best sample is a = 50/99 (or 49/99).
    counts = np.array([[[10, 10, 10, 50], [2, 10, 2, 2]]])
    res = bsds_benchmark.summarize([0.3, 0.6], counts)
    a = 50 / 99
    r, p = 1 - 0.8 * a, 0.2 + 0.8 * a
    assert res["ods"] == pytest.approx(2 * p * r / (p + r), abs=1e-12)
    assert res["ods_threshold"] == pytest.approx(0.3 + 0.3 * (49 / 99), abs=1e-12) or \
        res["ods_threshold"] == pytest.approx(0.3 + 0.3 * a, abs=1e-12)
    assert res["ois"] == pytest.approx(1 / 3)  # OIS picks a sampled threshold, no interpolation


def test_r50_interpolates_at_half_precision():
    t = np.array([0.2, 0.4, 0.6])
    # R = 25/30, 19/30, 7/30 (off the 0.01 grid) and P = .4 / .6 / .9: R50 interpolates between P .4 and .6.
    counts = np.array([[[25, 30, 4, 10], [19, 30, 6, 10], [7, 30, 9, 10]]])
    res = bsds_benchmark.summarize(t, counts)
    assert res["r50"] == pytest.approx((25 / 30 + 19 / 30) / 2)
    # AP: P(r) linear between the points, sampled at r = .24 .. .83 (inside the recall range), summed / 100.
    grid = np.arange(24, 84) / 100
    assert res["ap"] == pytest.approx(np.interp(grid, [7 / 30, 19 / 30, 25 / 30], [0.9, 0.6, 0.4]).sum() / 100)


def test_thresholds_are_the_benchmarks():
    np.testing.assert_allclose(bsds_benchmark.thresholds_for(99), np.arange(1, 100) / 100)
    np.testing.assert_allclose(bsds_benchmark.thresholds_for(3), [0.25, 0.5, 0.75])


# ============================================================================================ directories & CLI


def test_cli_end_to_end_and_results_records(tmp_path):
    from gmae.cli import main
    from gmae.results import ResultsStore

    pred_dir, gt_dir = bsds_benchmark.write_synthetic_set(tmp_path / "set", 3, 48, 64, 3, seed=1)
    out = tmp_path / "bsds"  # the output dir; the result is OUT/bsds.json
    code = main(["eval", "bsds", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out),
                 "--thresholds", "19", "--max-dist", "0.03", "--workers", "1", "--quiet",
                 "--results", str(tmp_path / "store"), "--model-name", "toy"])
    assert code == 0
    res = json.loads((out / "bsds.json").read_text())
    for k in ("ods", "ois", "ap", "r50", "n_images", "ods_threshold", "curve", "per_image"):
        assert k in res
    assert res["n_images"] == 3 and len(res["curve"]["threshold"]) == 19 and 0 < res["ods"] <= 1
    recs = ResultsStore(tmp_path / "store").read()
    assert sorted(r["metric"] for r in recs) == ["ap", "ods", "ois", "r50"]
    assert all(r["protocol"] == "bsds_edges" and r["model"] == "toy" for r in recs)
    assert all(r["result_file"] == str((out / "bsds.json").resolve()) and r["n_images"] == 3 for r in recs)
    assert {r["metric"]: r["value"] for r in recs}["ods"] == pytest.approx(res["ods"])
    assert not (out / "results.jsonl").exists()  # --results given: the records went there only
    # Parallel workers give the same numbers.
    par = bsds_benchmark.evaluate_dir(pred_dir, gt_dir, 19, 0.03, workers=2)
    assert par["curve"]["cntR"] == res["curve"]["cntR"] and par["curve"]["cntP"] == res["curve"]["cntP"]
    assert par["ods"] == pytest.approx(res["ods"], abs=0) and par["ap"] == pytest.approx(res["ap"], abs=0)


def test_cli_records_default_to_the_out_dir_and_need_a_label(tmp_path, capsys):
    from gmae.cli import main
    from gmae.results import ResultsStore

    pred_dir, gt_dir = bsds_benchmark.write_synthetic_set(tmp_path / "set", 2, 32, 40, 2, seed=3)
    out = tmp_path / "bsds"
    assert main(["eval", "bsds", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out), "--quiet",
                 "--thresholds", "9", "--workers", "1", "--model-name", "toy"]) == 0
    recs = ResultsStore(out).read()  # no --results: OUT is the store
    assert sorted(r["metric"] for r in recs) == ["ap", "ods", "ois", "r50"] and {r["model"] for r in recs} == {"toy"}
    assert recs[0]["config"]["thresholds"] == 9 and recs[0]["config"]["data"]["pred"] == str(pred_dir)
    assert (out / "config.yaml").is_file() and (out / "bsds.json").is_file()
    capsys.readouterr()
    # without a label the records could not be attributed: refused before scoring, naming the key
    for extra, key in (([], "run.model_name"), (["--model-name", "toy", "thresholds=0"], "thresholds"),
                       (["--model-name", "toy", "max_dist=-1"], "max_dist")):
        bad = tmp_path / f"bad_{key}"
        assert main(["eval", "bsds", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(bad), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0], err
        assert not bad.exists()


def test_bad_inputs_name_the_file(tmp_path):
    from scipy.io import savemat

    pred_dir, gt_dir = bsds_benchmark.write_synthetic_set(tmp_path / "set", 2, 32, 40, 2, seed=2)
    with pytest.raises(FileNotFoundError, match="nope"):
        bsds_benchmark.evaluate_dir(tmp_path / "nope", gt_dir)
    ids = sorted(p.stem for p in pred_dir.glob("*.png"))
    # id mismatch
    (pred_dir / f"{ids[0]}.png").rename(pred_dir / "999.png")
    with pytest.raises(ValueError, match=f"{ids[0]}.*|999"):
        bsds_benchmark.evaluate_dir(pred_dir, gt_dir)
    (pred_dir / "999.png").rename(pred_dir / f"{ids[0]}.png")
    # size mismatch
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(pred_dir / f"{ids[1]}.png")
    with pytest.raises(ValueError, match=f"{ids[1]}.png.*differs"):
        bsds_benchmark.evaluate_dir(pred_dir, gt_dir)
    # RGB prediction
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(pred_dir / f"{ids[1]}.png")
    with pytest.raises(ValueError, match=f"{ids[1]}.png.*single-channel"):
        bsds_benchmark.evaluate_dir(pred_dir, gt_dir)
    # .mat without groundTruth
    savemat(str(gt_dir / f"{ids[1]}.mat"), {"something": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=f"{ids[1]}.mat.*groundTruth"):
        bsds_benchmark.evaluate_dir(pred_dir, gt_dir)


def test_gt_loader_reads_bsds_layout(tmp_path):
    from scipy.io import loadmat

    seg = np.zeros((8, 9), np.uint16)
    bd = np.zeros((8, 9), bool)
    bd[2, 3:6] = True
    (tmp_path / "x.mat").write_bytes(ground_truth_mat_bytes([seg, seg], [bd, ~bd]))
    raw = loadmat(tmp_path / "x.mat")["groundTruth"][0, 1]["Boundaries"][0, 0]  # the documented access path
    np.testing.assert_array_equal(raw != 0, ~bd)
    got = load_gt_boundaries(tmp_path / "x.mat")
    assert len(got) == 2 and (got[0] == bd).all() and (got[1] == ~bd).all()


def test_classic_edges_cli(tmp_path, capsys):
    from gmae.cli import main

    rng = np.random.default_rng(4)
    (tmp_path / "bsds" / "images").mkdir(parents=True)
    _, segs, bds = bsds_benchmark.synthetic_image(rng, 48, 64, 1, n_regions=6)
    img = ((segs[0] % 5) * 50 + 10).astype(np.uint8)
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "bsds" / "images" / "100.jpg", quality=95)
    for method in ("sobel", "canny"):
        out = tmp_path / method
        assert main(["eval", "classic-edges", "--data", str(tmp_path / "bsds"), "--method", method,
                     "--out", str(out)]) == 0
        assert sorted(p.name for p in out.glob("*.png")) == ["100.png"]  # nothing else the benchmark would pair
        with Image.open(out / "100.png") as im:
            assert im.mode == "L" and im.size == (64, 48)
            e = np.asarray(im) / 255.0
        counts = bsds_benchmark.evaluate_image(e, bds, 19, 0.03)[None]
        res = bsds_benchmark.summarize(bsds_benchmark.thresholds_for(19), counts)
        assert res["ods"] > 0.6, (method, res["ods"])  # edges of a piecewise-constant image are found
    # bad input: one line naming the folder, exit 2 (gmae.cli.one_line_error)
    assert main(["eval", "classic-edges", "--data", str(tmp_path / "nothing"), "--method", "sobel",
                 "--out", str(tmp_path / "x")]) == 2
    assert "nothing" in capsys.readouterr().err
    assert main(["eval", "classic-edges", "--data", str(tmp_path / "bsds"), "--method", "prewitt",
                 "--out", str(tmp_path / "y")]) == 2
    assert "method" in capsys.readouterr().err


# ============================================================================================ pyEdgeEval


def test_cross_check_against_pyedgeeval():
    """ODS / OIS / AP within 0.005 of pyEdgeEval (the original C++ matcher) on generated BSDS-like sets."""
    pytest.importorskip("pyEdgeEval")
    from pyEdgeEval.common.binary_label.calculate_metrics import calculate_metrics
    from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold_multiple_gts

    # Small images keep pyEdgeEval's CSA fast; max_dist is raised so the radius (~4 px) is the benchmark's
    # (0.0075 x the 481 x 321 diagonal = 4.3 px). 24 thresholds instead of 99 for time; same definitions.
    n_thr, md = 24, 0.035
    thr = bsds_benchmark.thresholds_for(n_thr)
    rng = np.random.default_rng(11)
    ours, theirs = [], []
    for i in range(3):
        pred, _, bds = bsds_benchmark.synthetic_image(rng, 64, 96, 3, n_regions=10)
        if i == 2:  # one NMS-ed map as CNN outputs are scored; the others exercise thinning of thick maps
            pred = np.round(np.clip(edge_nms(pred / 255.0), 0, 1) * 255).astype(np.uint8)
        e = pred / 255.0
        ours.append(bsds_benchmark.evaluate_image(e, bds, n_thr, md))
        cr, sr, cp, sp = evaluate_boundaries_threshold_multiple_gts(
            thr, e, [b.astype(np.uint8) for b in bds], max_dist=md, apply_thinning=True)
        theirs.append((cr, sr, cp, sp))
        np.testing.assert_array_equal(ours[-1][:, 1], sr)  # same GT pixel totals
    mine = bsds_benchmark.summarize(thr, np.stack(ours))
    _, _, ref = calculate_metrics(lambda s: s["c"], thr.tolist(), [{"name": str(i), "c": c} for i, c in
                                                                    enumerate(theirs)], nproc=1)
    assert mine["ods"] == pytest.approx(ref["ODS_f1"], abs=0.005)
    assert mine["ois"] == pytest.approx(ref["OIS_f1"], abs=0.005)
    # pyEdgeEval's "AUC" is the MATLAB AP (its "AP" is a different, max-precision-based formula).
    assert mine["ap"] == pytest.approx(ref["AUC"], abs=0.005)
