"""Models: the shared masked ViT encoder, GMAE, the MAE baseline and the registry both register in."""

# importing the model modules registers their variants
from gmae.models import gmae, mae  # noqa: F401
from gmae.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
