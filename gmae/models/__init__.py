"""Models: the shared masked ViT encoder, GMAE, and the registry the MAE baseline also uses."""

from gmae.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
