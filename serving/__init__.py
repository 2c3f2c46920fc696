"""Serving stage: run the Triton server bundled in nvidia-pytriton over a model repository.

``python -m serving up --repository model_repository`` or, from Python,
``with TritonServer(repository) as server: server.grpc_url``. See serving/README.md.
"""

from .server import ServerError, TritonServer, find_free_port, list_repository_models

__all__ = ["ServerError", "TritonServer", "find_free_port", "list_repository_models"]
