"""Training throughput: steps/s of one family's training step, per preset and precision.

The family's registry entry's `train_step` with its `make_optimizers` (train/families.py), on random clips held in memory (no data
loading), unconditional unless `overrides` (train/run.py's --set) make the model conditional (then
one-hot labels cycling over the classes), after `keep_freed_memory()` as train/run.py does; the networks are
wrapped for the precision by `train.runtime.wrap_networks` (bf16 autocast is recorded as
refused, with the reason, where the CPU has no native bf16).
"""
from __future__ import annotations

import math

from bench.host import summarize

from .measure import measure_serial


def bench_training(family: str, preset: str, batch: int, *, warmup: int, repeats: int, min_repeats: int,
                   budget_s: float, seed: int, precision: str = "fp32", overrides: dict | None = None) -> dict:
    import torch

    from train.families import get_family
    from train.models import build_model
    from train.recipes import RecipeOptions
    from train.runtime import check_precision, keep_freed_memory, wrap_networks

    try:
        check_precision(precision, torch.device("cpu"))
    except ValueError as error:
        return {"family": family, "preset": preset, "batch": batch, "precision": precision, "refused": str(error)}
    keep_freed_memory()  # as train/run.py does

    torch.manual_seed(seed)
    overrides = dict(overrides or {})
    model = build_model(family, preset, **overrides).train()
    cfg = model.config
    nets = dict(model.named_children())
    options = RecipeOptions()
    entry = get_family(family)
    optimizers = entry.make_optimizers(nets, options)
    nets = wrap_networks(nets, precision, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand((batch, *model.video_shape), generator=gen) * 2 - 1
    onehot = None
    if model.num_classes:
        onehot = torch.nn.functional.one_hot(torch.arange(batch) % model.num_classes, model.num_classes).float()
    step = entry.train_step
    counter = [0]

    def one():
        losses = step(nets, optimizers, real, onehot, torch.Generator().manual_seed(seed + counter[0]), cfg, options)
        counter[0] += 1
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"{family}/{preset}: non-finite training loss {losses}")
        return losses

    cell = measure_serial(one, warmup=warmup, repeats=repeats, min_repeats=min_repeats, budget_s=budget_s)
    lat = summarize(cell["latencies_s"])
    return {"family": family, "preset": preset, "overrides": overrides, "batch": batch, "precision": precision,
            "n": cell["n"],
            "warmup": warmup, "s_per_step": {k: round(v, 4) for k, v in lat.items()},
            "steps_per_s": round(1.0 / lat["p50"], 4), "clips_per_s": round(batch / lat["p50"], 3),
            "params": model.param_counts(), "cores_busy": cell["cores_busy"],
            "loadavg_before": cell["loadavg_before"], "loadavg_after": cell["loadavg_after"],
            "data": "random clips in [-1, 1] held in memory (no data loading), "
                    + ("conditional" if onehot is not None else "unconditional")}
