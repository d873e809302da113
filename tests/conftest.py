import os

# Nothing may download at run time: a stray pretrained=True fails in 0.2 s instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".torch_home_unused"))

import pytest  # noqa: E402

from fixtures_pretrain import tiny_gmae_checkpoint  # noqa: E402,F401  (session fixture shared by test files)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The embedded tiny multi-task data set (64 px), generated once per test session."""
    from gmae.data.tiny import generate_tiny

    root = tmp_path_factory.mktemp("tiny")
    generate_tiny(root, seed=0, size=64)
    return root
