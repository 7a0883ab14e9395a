"""Two gloo processes on CPU train one model that clusters as well as a single process."""

import os
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import factvae
from factvae.outputs.scores import clustering_scores
from factvae.train.distributed import ProcessGroup

SETTINGS = {"n_hvg": 200, "n_components": 20, "n_latent": 8}
DATA = {"n_cells": 400, "n_genes": 250, "n_peaks": 1500, "seed": 6}
EPOCHS = 20


def _fit(batch_size: int) -> factvae.FactVAE:
    sim = factvae.simulate(**DATA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **SETTINGS)
    return model.fit(max_epochs=EPOCHS, batch_size=batch_size, progress=False, seed=0)


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = _fit(batch_size=64)
        latent = model.get_latent()
        np.save(f"{out}/latent{rank}.npy", latent)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ari(latent: np.ndarray) -> float:
    labels = factvae.simulate(**DATA).rna.obs["cell_type"].to_numpy()
    return clustering_scores(latent, labels)["ari"]


@pytest.mark.slow  # two processes train
def test_two_gloo_processes_match_a_single_process(tmp_path):
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    rank0, rank1 = np.load(tmp_path / "latent0.npy"), np.load(tmp_path / "latent1.npy")
    np.testing.assert_array_equal(rank0, rank1)  # gradients averaged: the ranks never diverge
    single = _fit(batch_size=128).get_latent()
    assert _ari(rank0) >= _ari(single) - 0.05
    assert _ari(rank0) >= 0.8  # 20 short epochs: a floor; the line above is the claim


def test_shards_are_disjoint_equal_and_cover_all_but_a_remainder():
    shards = [ProcessGroup(r, 3).shard(10) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(np.concatenate(shards))) == 9
    assert list(ProcessGroup().shard(5)) == [0, 1, 2, 3, 4]
