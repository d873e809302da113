"""Zero-shot read-outs (eval/zeroshot): metrics against hand computations, the figure-ground rule and the edge
method on hand-built Gaussian scenes, layer renders against closed forms, and the commands end to end."""

import json
import os

import numpy as np
import pytest
import torch

from eval.zeroshot.edges import (depth_group_edges, group_bounds, group_index_map, index_edges,
                                 native_edge_map)
from eval.zeroshot.figure_ground import (f_beta_curve, figure_ground, image_metrics, iou, max_f_beta,
                                         oracle_figure_ground, otsu_split, pixel_accuracy)
from eval.zeroshot.layers import cumulative_renders, depth_rank_render, slice_renders
from gmae.render import Gaussians, render

H = W = 32


def _gaussians(means, scales, colors, opacities) -> Gaussians:
    """One image of isotropic, unrotated Gaussians from per-Gaussian lists."""
    n = len(means)
    f = lambda x: torch.tensor(np.asarray(x, np.float32))[None]  # noqa: E731
    return Gaussians(f(means), f(scales), f([[1.0, 0.0, 0.0, 0.0]] * n), f(colors), f(opacities))


def _x(u):
    """Pixel coordinate (continuous, of a 32-px image) -> the paper camera's x (u = 16 (x + 1))."""
    return u / (W / 2) - 1.0


def _shuffle(g: Gaussians, seed: int = 0) -> Gaussians:
    return g.take(torch.randperm(g.num, generator=torch.Generator().manual_seed(seed)))


def _random(b=2, n=24, seed=0, max_opacity=0.3) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    return Gaussians(r(b, n, 3) * 1.6 - 0.8, 0.2 + 0.5 * r(b, n, 3), torch.randn(b, n, 4, generator=gen),
                     r(b, n, 3), max_opacity * r(b, n))


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_match_hand_computation():
    soft = np.array([[0.92, 0.6], [0.32, 0.12]])
    gt = np.array([[1, 0], [1, 0]])
    # at 0.5: P = {0.92, 0.6}; |P and G| = 1, |P or G| = 3; right: 0.92 (1), 0.12 (0) -> 2 of 4
    m = image_metrics(soft, gt)
    assert m["iou"] == pytest.approx(1 / 3)
    assert m["pixel_acc"] == pytest.approx(0.5)
    # q = round(255 s) = 235, 153, 82, 31. Thresholds t = 1..255, F = 1.3 P R / (0.3 P + R):
    #   t <= 31: all 4 (P .5, R 1) -> .65 / 1.15; 32..82: 3 (P 2/3, R 1) -> 1.3 (2/3) / 1.2;
    #   83..153: 2 (P .5, R .5) -> .325 / .65; 154..235: 1 (P 1, R .5) -> .65 / .8; > 235: none -> 0
    curve = f_beta_curve(soft, gt)
    assert curve.shape == (255,)
    expect = np.zeros(255)
    expect[0:31] = 0.65 / 1.15
    expect[31:82] = 1.3 * (2 / 3) / 1.2
    expect[82:153] = 0.325 / 0.65
    expect[153:235] = 0.65 / 0.8
    np.testing.assert_allclose(curve, expect, atol=1e-12)
    assert max_f_beta(soft, gt) == pytest.approx(0.8125)
    assert m["max_f"] == pytest.approx(0.8125)
    # beta^2 = 0.3 is used once: "squared twice" (0.09) gives 1.09 * .5 / .59 at the best threshold
    assert max_f_beta(soft, gt, beta2=0.09) == pytest.approx(1.09 * 0.5 / 0.59)
    assert m["max_f"] != pytest.approx(1.09 * 0.5 / 0.59)


def test_metric_edge_cases():
    z = np.zeros((3, 3))
    assert iou(z, z) == 1.0 and pixel_accuracy(z, z) == 1.0
    assert max_f_beta(np.ones((3, 3)), z) == 0.0  # empty ground truth: recall undefined -> 0
    gt = np.eye(3)
    assert max_f_beta(gt.astype(float), gt) == pytest.approx(1.0)
    assert image_metrics(np.full((3, 3), 0.5), gt)["iou"] == pytest.approx(3 / 9)  # 0.5 counts as foreground
    with pytest.raises(ValueError, match="differ in size"):
        image_metrics(np.zeros((2, 3)), np.zeros((3, 2)))


# ------------------------------------------------------------------------------------------ figure-ground


def test_otsu_split_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        d = np.sort(np.round(rng.uniform(7, 9, n), 2))  # rounding makes ties, which must not be split
        w = rng.uniform(0, 1, n) * (rng.uniform(size=n) > 0.2)
        best, best_s = -1.0, n
        for s in range(1, n):
            if d[s] == d[s - 1] or w[:s].sum() == 0 or w[s:].sum() == 0:
                continue
            v = w[:s].sum() * w[s:].sum() * (np.average(d[:s], weights=w[:s]) - np.average(d[s:], weights=w[s:])) ** 2
            if v > best + 1e-12:
                best, best_s = v, s
        got = int(otsu_split(torch.tensor(d)[None], torch.tensor(w)[None])[0])
        assert got == best_s
    # two depth clusters; a transparent far-off Gaussian does not move the split
    d = torch.tensor([[7.0, 7.1, 7.2, 8.5, 8.6, 8.9, 8.95]])
    assert otsu_split(d).tolist() == [3]
    assert otsu_split(torch.tensor([[7.0, 7.1, 7.2, 7.3, 8.5, 8.6]]),
                      torch.tensor([[1.0, 1, 1, 0, 1, 1]])).tolist() == [3]


def _disc_scene():
    """A near disc (radius ~8 px, small Gaussians, z = -0.8) over a far background of large Gaussians (z = 0.8)
    covering the whole 32 x 32 image; returns the shuffled Gaussians, the disc's pixel mask and its size."""
    means, scales, colors, ops = [], [], [], []
    for i in range(8):
        for j in range(8):
            means.append([_x(4 * j + 2), _x(4 * i + 2), 0.8])
            scales.append([2.0] * 3)
            colors.append([0.2, 0.3, 0.8])
            ops.append(0.95)
    n_back = len(means)
    for v in np.arange(9.0, 24, 1.5):
        for u in np.arange(9.0, 24, 1.5):
            if (u - 16) ** 2 + (v - 16) ** 2 <= 6.5 ** 2:
                means.append([_x(u), _x(v), -0.8])
                scales.append([0.6] * 3)
                colors.append([0.9, 0.2, 0.1])
                ops.append(0.95)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    gt = (xx - 16) ** 2 + (yy - 16) ** 2 <= 8 ** 2
    return _shuffle(_gaussians(means, scales, colors, ops)), gt, len(means) - n_back


def test_figure_ground_rule_recovers_near_object():
    g, gt, n_disc = _disc_scene()
    assert float(render(g, H, W).alpha.min()) > 0.9  # the background really covers the image
    fg = figure_ground(g, H, W)
    assert fg.split.tolist() == [n_disc]  # the front layer is exactly the disc's Gaussians
    assert fg.soft.shape == (1, H, W)
    assert iou(fg.soft[0].numpy() >= 0.5, gt) > 0.9
    # the oracle is the first split of best IoU among all k (brute force over cumulative renders)
    orc = oracle_figure_ground(g, [gt], H, W, chunk_images=16)
    alphas = cumulative_renders(g, range(1, g.num + 1), H, W).alpha[0]
    ious = [iou(a.numpy() >= 0.5, gt) for a in alphas]
    assert orc.split.tolist() == [1 + int(np.argmax(ious))]
    assert iou(orc.soft[0].numpy() >= 0.5, gt) == max(ious) >= iou(fg.soft[0].numpy() >= 0.5, gt)


# ------------------------------------------------------------------------------------------ layers


def test_cumulative_all_equals_full_render_and_keep_first():
    g = _random(b=2, n=24)
    full = render(g, H, W)
    cum = cumulative_renders(g, [0, 5, 24], H, W)
    assert cum.rgb.shape == (2, 3, H, W, 3) and cum.alpha.shape == (2, 3, H, W)
    torch.testing.assert_close(cum.rgb[:, 2], full.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(cum.alpha[:, 2], full.alpha, atol=1e-6, rtol=0)
    assert torch.all(cum.rgb[:, 0] == 1.0) and torch.all(cum.alpha[:, 0] == 0)  # K = 0: bare white
    # K = 5 is the 5 nearest of each image
    gs = g.sort_by_depth()
    near5 = render(Gaussians(*(t[:, :5] for t in (gs.means, gs.scales, gs.quats, gs.colors, gs.opacities))), H, W)
    torch.testing.assert_close(cum.rgb[:, 1], near5.rgb, atol=1e-6, rtol=0)
    # per-image prefixes by zero opacity render like per-image subsets
    mixed = render(gs.keep_first(torch.tensor([5, 17])), H, W)
    for i, k in enumerate((5, 17)):
        one = Gaussians(*(t[i:i + 1, :k] for t in (gs.means, gs.scales, gs.quats, gs.colors, gs.opacities)))
        torch.testing.assert_close(mixed.rgb[i:i + 1], render(one, H, W).rgb, atol=1e-6, rtol=0)


def test_slices_compose_to_the_full_render():
    # opacities <= 0.3 over 24 Gaussians keep transmittance above the 1e-4 cut-off, so "over" is exact
    g = _random(b=2, n=24, seed=1)
    black = torch.zeros(3)
    parts = slice_renders(g, [(0, 7), (7, 15), (15, 24)], H, W, background=black)
    color, trans = torch.zeros(2, H, W, 3), torch.ones(2, H, W)
    for j in range(3):  # front-to-back "over" of premultiplied layers
        color = color + trans[..., None] * parts.rgb[:, j]
        trans = trans * (1 - parts.alpha[:, j])
    color = color + trans[..., None] * 1.0  # white background
    full = render(g, H, W)
    torch.testing.assert_close(color, full.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(1 - trans, full.alpha, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="depth slice"):
        slice_renders(g, [(5, 3)], H, W)


def test_depth_rank_render_closed_form():
    # two separate Gaussians of opacity 0.9; at a centre alpha = 0.9 (the 0.3 I blur is a convolution that
    # leaves the peak at exp(0) = 1): grey = 0.9 * rank / 2 + 0.1 * white
    g = _gaussians([[_x(8.5), _x(8.5), 0.5], [_x(24.5), _x(24.5), -0.5]], [[0.3] * 3] * 2, [[1, 0, 0]] * 2,
                   [0.9, 0.9])
    grey = depth_rank_render(g, H, W)[0]
    assert float(grey[24, 24]) == pytest.approx(0.1, abs=1e-5)  # the nearer one: rank 0, black
    assert float(grey[8, 8]) == pytest.approx(0.9 * 0.5 + 0.1, abs=1e-5)  # rank 1 of 2
    assert float(grey[0, 31]) == pytest.approx(1.0)
    first = cumulative_renders(g, [1], H, W)
    assert float(first.alpha[0, 0, 24, 24]) == pytest.approx(0.9, abs=1e-5)
    assert float(first.alpha[0, 0, 8, 8]) == 0.0


# ------------------------------------------------------------------------------------------ edges


def test_index_edges_on_hand_made_map():
    idx = torch.tensor([[0, 0, 1, 1],
                        [0, 0, 1, 1],
                        [2, 2, 2, 2]])
    expect = torch.tensor([[0, 1, 1, 0],
                           [1, 1, 1, 1],
                           [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(index_edges(idx), expect)
    assert not index_edges(torch.full((3, 5), 4)).any()


def test_group_index_map_and_bounds():
    assert group_bounds(10, 4) == [0, 2, 5, 7, 10]
    assert group_bounds(256, 32)[1] == 8
    with pytest.raises(ValueError, match="non-empty groups"):
        group_bounds(3, 4)
    # one row of 4 pixels, l = 3: R_0 white; pixel 0 changes (by 0.5) with group 0, pixel 1 with group 1,
    # pixel 2 only by 0.05 per step (below 0.1: never), pixel 3 with group 2 (its earlier change is too small)
    r = torch.ones(1, 4, 1, 4, 3)
    r[0, 1:, 0, 0] = 0.5
    r[0, 2:, 0, 1] = 0.2
    r[0, 1, 0, 2], r[0, 2, 0, 2], r[0, 3, 0, 2] = 0.95, 0.9, 0.85
    r[0, 1:3, 0, 3, 0] = 0.95
    r[0, 3, 0, 3] = 0.0
    assert group_index_map(r, 0.1).tolist() == [[[0, 1, 3, 2]]]
    assert group_index_map(r, 0.01).tolist() == [[[0, 1, 0, 0]]]


def _square(u0, v0, side, z, color):
    steps = np.arange(0.5, side, 1.0)
    means = [[_x(u0 + du), _x(v0 + dv), z] for dv in steps for du in steps]
    return means, [[0.25] * 3] * len(means), [color] * len(means), [0.99] * len(means)


def test_edges_of_two_squares_at_different_depths():
    a = _square(4, 4, 10, -0.5, [0.9, 0.1, 0.1])  # near: pixels 4..13
    b = _square(18, 16, 10, 0.5, [0.1, 0.1, 0.9])  # far: columns 18..27, rows 16..25
    assert len(a[0]) == len(b[0])
    g = _shuffle(_gaussians(*(x + y for x, y in zip(a, b))))
    out = depth_group_edges(g, H, W, levels=(2,), threshold=0.1)
    idx, e = out.index[2][0].numpy(), out.edges[2][0].numpy()
    assert (idx[6:12, 6:12] == 0).all() and (idx[18:24, 20:26] == 1).all()
    assert idx[0, 31] == 2 and idx[30, 1] == 2
    # edge pixels lie within 2 px of a square's border, and each side of both squares has edge pixels
    yy, xx = np.mgrid[0:H, 0:W] + 0.5

    def border_dist(u0, v0, side):
        inside = (xx > u0) & (xx < u0 + side) & (yy > v0) & (yy < v0 + side)
        dx = np.maximum(np.maximum(u0 - xx, xx - (u0 + side)), 0)
        dy = np.maximum(np.maximum(v0 - yy, yy - (v0 + side)), 0)
        outside = np.hypot(dx, dy)
        ins = np.minimum.reduce([xx - u0, u0 + side - xx, yy - v0, v0 + side - yy])
        return np.where(inside, ins, outside)

    da, db = border_dist(4, 4, 10), border_dist(18, 16, 10)
    assert e.any()
    assert (np.minimum(da, db)[e] <= 2.0).all()
    for d, (u0, v0) in ((da, (4, 4)), (db, (18, 16))):
        near = e & (d <= 2.0)
        assert near[v0 + 2:v0 + 8, u0 - 2:u0 + 2].any() and near[v0 + 2:v0 + 8, u0 + 8:u0 + 12].any()
        assert near[v0 - 2:v0 + 2, u0 + 2:u0 + 8].any() and near[v0 + 8:v0 + 12, u0 + 2:u0 + 8].any()
    # the streamed computation equals group_index_map of the cumulative renders (R_0 = white)
    cum = cumulative_renders(g, group_bounds(g.num, 2), H, W).rgb
    assert torch.equal(group_index_map(cum, 0.1), out.index[2])


def test_depth_group_edges_levels_and_chunking_agree():
    g = _random(b=2, n=32, seed=3, max_opacity=0.9)
    a = depth_group_edges(g, H, W, levels=(4, 8, 16), threshold=0.05, chunk_images=64)
    b = depth_group_edges(g, H, W, levels=(4, 8, 16), threshold=0.05, chunk_images=1)
    for lv in (4, 8, 16):
        assert torch.equal(a.index[lv], b.index[lv])
        assert a.index[lv].max() <= lv
        cum = cumulative_renders(g, group_bounds(32, lv), H, W).rgb
        assert torch.equal(group_index_map(cum, 0.05), a.index[lv])
    fused = torch.stack([a.edges[lv].float() for lv in (4, 8, 16)]).mean(0)
    torch.testing.assert_close(a.soft, fused)


def test_native_edge_map_resizes_and_thins():
    from eval.edge_nms import thin

    idx = torch.zeros(32, 32, dtype=torch.long)
    idx[:, 16:] = 1
    soft = index_edges(idx).float()
    e = native_edge_map(soft, (48, 80))
    assert e.shape == (48, 80) and e.min() >= 0 and e.max() <= 1
    assert np.array_equal(thin(e > 0), e > 0)
    cols = np.nonzero(e[10:38].max(0) > 0.2)[0]
    assert cols.min() >= 38 and cols.max() <= 42  # the x = 16/32 boundary lands at 40 of 80


# ------------------------------------------------------------------------------------------ commands


def test_figure_ground_command(tiny_data, tiny_gmae_checkpoint, tmp_path):
    from PIL import Image

    from gmae.cli import main
    from gmae.results import ResultsStore

    out, res = tmp_path / "fg", tmp_path / "res"
    code = main(["eval", "figure-ground", "--checkpoint", str(tiny_gmae_checkpoint), "--data",
                 str(tiny_data / "saliency"), "--out", str(out), "--results", str(res), "--oracle",
                 "--device", "cpu", "--figure-images", "2"])
    assert code == 0
    recs = ResultsStore(res).read()
    variants = (("", "rule"), ("_oracle", "oracle"))
    assert {(r["protocol"], r["metric"], r["variant"]) for r in recs} == {
        ("figure_ground", m + s, v) for m in ("iou", "pixel_acc", "max_f") for s, v in variants}
    rows = json.loads((out / "per_image.json").read_text())
    masks = sorted((tiny_data / "saliency" / "masks").iterdir())
    assert len(rows) == len(masks) == 16
    by = {r["metric"]: r["value"] for r in recs}
    assert by["iou"] == pytest.approx(np.mean([r["iou"] for r in rows]))
    assert by["max_f"] == pytest.approx(np.mean([r["max_f"] for r in rows]))
    for r in rows:  # the oracle maximises IoU over all splits, the rule's among them
        assert r["iou_oracle"] >= r["iou"] - 1e-12
    for m in masks[:3]:  # soft maps at the mask's native size, and the row recomputes from the saved map
        with Image.open(out / "maps" / m.name) as im, Image.open(m) as gt:
            assert im.size == gt.size and im.mode == "L"
            soft, g = np.asarray(im) / 255.0, np.asarray(gt.convert("L")) >= 128
        row = next(r for r in rows if r["id"] == m.stem)
        assert image_metrics(soft, g)["max_f"] == pytest.approx(row["max_f"], abs=1e-9)
    assert (out / "per_image.csv").read_text().splitlines()[0].startswith("id,split,iou,pixel_acc,max_f")
    assert (out / "figure_ground.png").is_file() and (out / "figure_ground.pdf").is_file()


def test_edges_command(tiny_data, tiny_gmae_checkpoint, tmp_path):
    from PIL import Image

    from gmae.cli import main
    from gmae.results import ResultsStore

    out, res = tmp_path / "pred", tmp_path / "res"
    code = main(["eval", "edges", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tiny_data / "bsds500"),
                 "--out", str(out), "--results", str(res), "--device", "cpu", "--workers", "1",
                 "--figure-images", "2"])
    assert code == 0
    ids = sorted(p.stem for p in (tiny_data / "bsds500" / "images").glob("*.jpg"))
    assert sorted(p.stem for p in out.glob("*.png")) == ids
    for i in ids:
        with Image.open(out / f"{i}.png") as e, Image.open(tiny_data / "bsds500" / "images" / f"{i}.jpg") as im:
            assert e.mode == "L" and e.size == im.size
    recs = ResultsStore(res).read()
    assert sorted(r["metric"] for r in recs) == ["ap", "ods", "ois", "r50"]
    assert all(r["protocol"] == "bsds_edges" and r["n_images"] == len(ids) for r in recs)
    result = json.loads((out / "report" / "bsds_result.json").read_text())
    assert {r["metric"]: r["value"] for r in recs}["ods"] == pytest.approx(result["ods"])
    assert 0.0 <= result["ods"] <= 1.0 and result["ois"] >= result["ods"] - 1e-9
    assert (out / "report" / "edge_hierarchy.png").is_file() and (out / "report" / "edge_hierarchy.pdf").is_file()
    # without ground truth: maps only, nothing scored
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    for i in ids[:2]:
        os.link(tiny_data / "bsds500" / "images" / f"{i}.jpg", bare / "images" / f"{i}.jpg")
    code = main(["eval", "edges", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(bare), "--out",
                 str(tmp_path / "pred2"), "--results", str(tmp_path / "res2"), "--device", "cpu",
                 "--render-size", "native", "--figure-images", "0"])
    assert code == 0 and len(list((tmp_path / "pred2").glob("*.png"))) == 2
    assert not (tmp_path / "res2").exists()


def test_layers_command_and_input_errors(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    from gmae.cli import main

    out = tmp_path / "layers"
    code = main(["eval", "layers", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tiny_data / "saliency"),
                 "--out", str(out), "--max-images", "2", "--device", "cpu"])
    assert code == 0
    z = np.load(out / "layers.npz")
    assert z["cumulative"].shape == (2, 4, 64, 64, 3) and list(z["ks"]) == [12, 24, 48, 96]
    assert z["depth_grey"].shape == (2, 64, 64)
    assert (out / "layers.png").is_file() and (out / "layers.pdf").is_file()
    # bad inputs fail before any work, naming the file
    assert main(["eval", "figure-ground", "--checkpoint", str(tmp_path / "nope.pth"), "--data",
                 str(tiny_data / "saliency"), "--out", str(tmp_path / "x")]) == 2
    assert "nope.pth" in capsys.readouterr().err
    assert main(["eval", "edges", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "missing" in capsys.readouterr().err


def test_records_land_in_the_out_dir_and_bad_keys_exit_2(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    from gmae.cli import main
    from gmae.config import load_config
    from gmae.results import ResultsStore

    from eval.zeroshot.figure_ground import FigureGroundConfig

    out = tmp_path / "fg"
    assert main(["eval", "figure-ground", "--checkpoint", str(tiny_gmae_checkpoint), "--data",
                 str(tiny_data / "saliency"), "--out", str(out), "--max-images", "2", "--figure-images", "0",
                 "--device", "cpu"]) == 0
    recs = ResultsStore(out).read()  # no --results: the output dir is the store
    assert sorted(r["metric"] for r in recs) == ["iou", "max_f", "pixel_acc"]
    assert all(r["n_images"] == 2 and r["variant"] == "rule" and r["config"]["max_images"] == 2 for r in recs)
    # the saved config is the full one and reloads as it ran
    saved = load_config(FigureGroundConfig, out / "config.yaml")
    assert saved.max_images == 2 and saved.run.device == "cpu" and saved.data.root == str(tiny_data / "saliency")
    capsys.readouterr()
    # bad keys: one line naming the key, exit 2, before any work
    for argv, key in ((["eval", "figure-ground", "--data", str(tiny_data / "saliency"), "batch_size=0"], "batch_size"),
                      (["eval", "figure-ground", "--data", str(tiny_data / "saliency"), "nosuch_key=1"], "nosuch_key"),
                      (["eval", "edges", "--data", str(tiny_data / "bsds500"), "render_size=huge"], "render_size"),
                      (["eval", "layers", "--data", str(tiny_data / "photos"), "--images", "a.png"], "data.images"),
                      (["eval", "layers", "--data", str(tiny_data / "photos"), "--slices", "0-4"], "slices")):
        bad = tmp_path / f"bad_{key}"
        assert main([*argv, "--checkpoint", str(tiny_gmae_checkpoint), "--out", str(bad)]) == 2, key
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0], (key, err)
        assert not bad.exists()


def test_figures_command_draws_centres_and_scale_effect(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    from gmae.cli import main

    out = tmp_path / "figs"
    scale = json.dumps({"c = 1": str(tiny_gmae_checkpoint), "c = 1 again": str(tiny_gmae_checkpoint)})
    assert main(["eval", "figures", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tiny_data / "photos"),
                 "--out", str(out), "--max-images", "2", "--device", "cpu", f"scale_effect={scale}"]) == 0
    for stem in ("centres", "scale_effect"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    assert not (out / "results.jsonl").exists()  # figures only, no records
    capsys.readouterr()
    bad = json.dumps({"c = 2": str(tmp_path / "nope.pth")})
    assert main(["eval", "figures", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tiny_data / "photos"),
                 "--out", str(tmp_path / "bad"), f"scale_effect={bad}"]) == 2
    err = capsys.readouterr().err
    assert "scale_effect" in err and "nope.pth" in err
