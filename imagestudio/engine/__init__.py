"""The engine: model catalog -> pipeline cache -> diffusers pipelines.
It never imports the server; callers hand it GenerationRequests."""

from .catalog import Catalog, ModelInfo
from .core import Engine, request_json
from .pipelines import PipelineCache
from .samplers import sampler_names
from .types import CancelToken, GeneratedImage, GenerationResult, Progress

__all__ = ["Catalog", "ModelInfo", "Engine", "PipelineCache", "CancelToken", "GeneratedImage",
           "GenerationResult", "Progress", "request_json", "sampler_names"]
