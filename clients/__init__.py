"""Thin Triton gRPC clients (numpy, tritonclient[grpc], av, pillow, tqdm only; nothing from train/ or export/).

- ``python -m clients.sample``      batch sampling job, one file per seed, resumable
- ``python -m clients.encode``      video file -> latents (.npz) through ``<name>_encode``
- ``python -m clients.reconstruct`` video file -> reconstruction through ``<name>_reconstruct``
- ``python -m clients.explore``     latent manipulations as GIF grids through ``<name>_sample``

Latents come from seeds by :func:`clients.latents.latents_for_seed`.
"""
