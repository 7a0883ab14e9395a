"""Where one training step's time goes on snare_hcellline: ``torch.profiler``'s table of the
operators (matrix products as ``aten::mm``, the fused kernels as ``CompiledFxGraph``) over one
epoch of default-setting steps, after three warm-up steps.

    .venv/bin/python benchmarks/profile_step.py [--precision auto|float32|bf16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import profile

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"])
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import factvae
    from factvae.train.allocator import reuse_freed_memory
    from factvae.train.batches import make_batch, minibatches
    from factvae.train.trainer import Trainer
    from snare_data import load_snare

    rna, atac, genes = load_snare()
    model = factvae.FactVAE(rna, atac, gene_annotation=genes)
    trainer = Trainer(model.network, model.settings.loss_weights(len(model.peaks)),
                      model.settings.optimiser(), torch.device("cpu"), args.precision,
                      ssa=model.settings.ssa_objective)  # fmt: skip
    rng = np.random.default_rng(0)
    batches = [make_batch(model._data, index, torch.device("cpu"))
               for index in minibatches(len(model.obs_names), 128, rng)]  # fmt: skip
    with reuse_freed_memory():
        for batch in batches[:3]:
            trainer.step(batch)
        times = []
        for batch in batches:
            start = time.perf_counter()
            trainer.step(batch)
            times.append(time.perf_counter() - start)
        with profile() as profiler:
            for batch in batches:
                trainer.step(batch)
    print(f"{trainer.precision} products: median step {1000 * np.median(times):.1f} ms over "
          f"{len(batches)} steps; "
          f"profiled totals below are for {len(batches)} steps")  # fmt: skip
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
