"""Weighted k-nearest-neighbour classification on frozen features, a minutes-long proxy for the linear probe:
``gmae eval knn --checkpoint CKPT --data DIR [--config FILE] [--out DIR] [--results DIR] [key=value ...]``.

Both splits go through the eval transform (Resize size x 256/224 bicubic + CenterCrop) and the frozen encoder (eval
mode); features (CLS after the final LayerNorm, or ``features=mean_tokens``) are L2-normalised; each val image
takes its k = 20 most cosine-similar train images, which vote for their class with weight exp(similarity / T),
T = 0.07 (DINO's weighted kNN). Top-1 / top-5 of the summed votes.

Extracted features are cached atomically in the out dir (``features_<split>.pth``, fp16, tied to the checkpoint's
sha256 and the feature settings), so an interrupted run resumes after the last finished split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

import torch
import torch.nn.functional as F

from eval.command import Context, EvalCommand, Outcome
from eval.classification import (FEATURES, ClassifierRunConfig, EvalDataConfig, FrozenEncoder, InputError,
                                 accuracy_records, eval_loader, extract_features, load_inputs, topk_correct,
                                 validate_common)


@dataclass
class KnnConfig:
    k: int = 20
    temperature: float = 0.07
    features: str = "cls"  # cls | mean_tokens
    # val images scored against the whole train bank at once (bounds the [chunk, N_train] similarity matrix)
    chunk: int = 256
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    run: ClassifierRunConfig = field(default_factory=lambda: ClassifierRunConfig(out_dir="runs/knn"))


def validate(cfg: KnnConfig) -> None:
    validate_common(cfg)
    if cfg.features not in FEATURES:
        raise InputError(f"features must be one of {FEATURES}, got {cfg.features!r}")
    if cfg.k < 1 or cfg.temperature <= 0 or cfg.chunk < 1:
        raise InputError(f"need k >= 1, temperature > 0 and chunk >= 1 (got k={cfg.k}, temperature="
                         f"{cfg.temperature}, chunk={cfg.chunk})")


@torch.no_grad()
def knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, query_feats: torch.Tensor, num_classes: int,
               k: int = 20, temperature: float = 0.07, chunk: int = 256) -> torch.Tensor:
    """Weighted kNN votes: train_feats [N, D], train_labels [N], query_feats [M, D] -> class scores [M, C].

    Features are L2-normalised here; neighbours = the k largest cosine similarities s (k capped at N); each adds
    exp(s / temperature) to its class.
    """
    bank = F.normalize(train_feats.float(), dim=1)
    k = min(k, bank.shape[0])
    out = []
    for q in F.normalize(query_feats.float(), dim=1).split(chunk):
        sims, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)
        votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
        out.append(votes)
    return torch.cat(out) if out else torch.zeros(0, num_classes, device=query_feats.device)


def _cached_features(cfg: KnnConfig, split: str, dataset, encoder, dist_info, source_sha256: str):
    """(features [N, D] fp16 L2-normalised, labels [N]) of one split, from the out-dir cache when it matches."""
    from gmae.engine.distributed import barrier
    from gmae.io import atomic_torch_save, safe_torch_load

    key = {"source_sha256": source_sha256, "features": cfg.features, "img_size": cfg.data.img_size,
           "split": split, "root": str(Path(cfg.data.root).resolve()), "n": len(dataset)}
    path = Path(cfg.run.out_dir) / f"features_{split}.pth"
    if path.is_file():
        cached = safe_torch_load(path)
        if cached.get("key") == key:
            return cached["features"].to(dist_info.device), cached["labels"].to(dist_info.device)
    loader = eval_loader(dataset, cfg.data, dist_info, dist_info.device)
    feats, labels = extract_features(encoder, loader, dist_info.device, cfg.run.amp,
                                     progress=dist_info.is_main and cfg.run.progress, desc=f"knn {split}")
    # fp16 both when cached and when fresh, so a resumed run scores exactly as an uninterrupted one
    feats = F.normalize(feats, dim=1).half()
    if dist_info.is_main:
        atomic_torch_save({"key": key, "features": feats.cpu(), "labels": labels.cpu()}, path)
    barrier()
    return feats, labels


def evaluate(cfg: KnnConfig, ctx: Context) -> Outcome:
    """Extract (or reload) features of both splits, score the val split; records on rank 0."""
    from gmae.data.transforms import eval_transform
    from gmae.engine.checkpoint import build_vit
    from gmae.engine.distributed import all_reduce_sum

    tf = eval_transform(cfg.data.img_size)
    inputs = load_inputs(cfg, ctx.checkpoint, tf, tf)
    dist_info = ctx.dist
    vit = build_vit(inputs.state_dict, inputs.arch, cfg.data.img_size, source=str(inputs.checkpoint))
    encoder = FrozenEncoder(vit, cfg.features).to(dist_info.device)
    train_f, train_y = _cached_features(cfg, cfg.data.train_split, inputs.train_set, encoder, dist_info,
                                        inputs.source_sha256)
    val_f, val_y = _cached_features(cfg, cfg.data.val_split, inputs.val_set, encoder, dist_info,
                                    inputs.source_sha256)
    # every rank holds both banks; each scores its share of the val rows, counts are summed
    mine = torch.arange(dist_info.rank, val_f.shape[0], dist_info.world_size, device=val_f.device)
    scores = knn_scores(train_f, train_y, val_f[mine], len(inputs.classes), cfg.k, cfg.temperature, cfg.chunk)
    counts = torch.cat([topk_correct(scores, val_y[mine]), torch.tensor([float(mine.numel())],
                                                                         device=scores.device)])
    counts = all_reduce_sum(counts)
    n = max(float(counts[2]), 1.0)
    summary: Dict[str, Any] = {"top1": 100.0 * float(counts[0]) / n, "top5": 100.0 * float(counts[1]) / n,
                               "n": int(counts[2]), "n_train": int(train_f.shape[0])}
    records = []
    if dist_info.is_main:
        records = accuracy_records(ctx, "knn", summary, k=cfg.k, temperature=cfg.temperature,
                                   features=cfg.features, num_classes=len(inputs.classes),
                                   split=cfg.data.val_split, n_train=summary["n_train"])
    line = (f"knn (k={cfg.k}, T={cfg.temperature}): top1 {summary['top1']:.2f}  top5 {summary['top5']:.2f} "
            f"({summary['n']} val images) -> {cfg.run.out_dir}")
    return Outcome(records, line, summary)


command = EvalCommand("knn", KnnConfig, evaluate, validate=validate,
                      data_help="ImageFolder root with train/ and val/ (sets data.root)",
                      config_help="(knn/vit_b16, knn/tiny)")
