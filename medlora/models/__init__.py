"""Base-model resolution, loading and quantization."""

from medlora.models.architecture import ModelSpec, describe_model
from medlora.models.loading import LoadedModel, load_base_model

__all__ = ["LoadedModel", "ModelSpec", "describe_model", "load_base_model"]
