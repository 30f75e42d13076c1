"""Studio overhead: Engine.generate vs. the bare diffusers pipeline call on the
same model, steps, size and batch, measured interleaved in one run.

    .venv/bin/python -m bench.bench_engine [--model NAME] [--steps 20] [--count 4] [--repeats 5]

Prints medians and the ratio; never fails on time (it is not a test).

The overhead ratio compares like with like: the engine runs with regions off, since the
bare pipeline cannot draw regions. A third timing shows what the embedded model's default
regions (read from the prompt's place words: two here) cost on top."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="catalog name (default: the default model)")
    parser.add_argument("--models", default=None, help="models folder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--size", type=int, default=None, help="square size (default: model's native)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from imagestudio.engine import Catalog, Engine
    from imagestudio.request import GenerationRequest

    models = args.models
    catalog = Catalog(models)
    if not catalog.list():  # no embedded weights yet: measure on a tiny pipeline
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from tiny import save_tiny_pipeline

        models = tempfile.mkdtemp()
        save_tiny_pipeline(Path(models) / "tiny")
        catalog = Catalog(models)
    engine = Engine(catalog)
    info = catalog.get(args.model)
    size = args.size or info.native_size
    request = GenerationRequest(prompt="a red circle on the left and a blue house on the right", model=info.name,
                                count=args.count, steps=args.steps, width=size, height=size, seed=1,
                                auto_regions=False)
    request = engine.prepare(request)
    regional = engine.prepare(request.model_copy(update={"auto_regions": True}))
    pipe = engine.cache.get(info, "txt2img")

    def studio():
        engine.generate(request)

    def studio_regions():
        engine.generate(regional)

    def bare():
        from imagestudio.engine.samplers import make_scheduler

        pipe.scheduler = make_scheduler(request.sampler, engine.cache.scheduler_config(info))
        gens = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.count)]
        pipe([request.prompt] * request.count, negative_prompt=[""] * request.count, height=size, width=size,
             num_inference_steps=request.steps, guidance_scale=request.guidance, generator=gens)

    studio(), bare(), studio_regions()  # warm up every path (model load, caches)
    times = {"studio": [], "diffusers": [], "regions": []}
    for _ in range(args.repeats):
        for name, fn in (("diffusers", bare), ("studio", studio), ("regions", studio_regions)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    s, d = statistics.median(times["studio"]), statistics.median(times["diffusers"])
    print(f"model={info.name} size={size} steps={args.steps} images={args.count} sampler={request.sampler} "
          f"threads={torch.get_num_threads()} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}")
    print(f"diffusers pipeline: {d:.3f} s (median of {args.repeats})")
    print(f"studio engine:      {s:.3f} s (median of {args.repeats})")
    print(f"studio / diffusers: {s / d:.3f}  (overhead {100 * (s / d - 1):+.1f}%)")
    r = statistics.median(times["regions"])
    print(f"studio with the prompt's 2 regions: {r:.3f} s (median of {args.repeats}); "
          f"regions / studio: {r / s:.3f} (a feature the bare call lacks, not overhead)")


if __name__ == "__main__":
    main()
