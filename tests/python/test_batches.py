"""Several samples in one analysis: batch covariates (``batch_key``), new cells embedded by a
trained model (``get_latent(rna=, atac=)``) and new batches learnt with the rest frozen
(``map_query``)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import factvae
from conftest import SMALL_SETTINGS
from factvae import FactVAEInputError

FIT = dict(batch_size=64, progress=False, seed=0)


@pytest.fixture(scope="module")
def bsim() -> factvae.SimulatedMultiome:
    """Three batches with depth and feature shifts; batch3 is kept back as the query."""
    return factvae.simulate(
        n_cells=420, n_genes=300, n_peaks=2000, seed=5, n_batches=3, batch_shift_sd=0.5
    )


def _split(sim):
    query = (sim.rna.obs["batch"] == "batch3").to_numpy()
    return (sim.rna[~query].copy(), sim.atac[~query].copy(),
            sim.rna[query].copy(), sim.atac[query].copy())  # fmt: skip


def _model(rna, atac, sim, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # features without counts, left out
        return factvae.FactVAE(rna, atac, gene_annotation=sim.genes, **{**SMALL_SETTINGS, **extra})


@pytest.fixture(scope="module")
def reference(bsim) -> factvae.FactVAE:
    rna, atac, _, _ = _split(bsim)
    # projected inputs: its own cells mapped as a query get exactly their training latent
    return _model(rna, atac, bsim, batch_key="batch", projected_inputs=True).fit(
        max_epochs=4, **FIT
    )


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


# ---- batch covariates -------------------------------------------------------------------------


def test_levels_are_kept_and_the_embeddings_stay_batch_free(reference, bsim):
    assert list(reference.batch_levels) == ["batch1", "batch2"]
    assert reference.settings.batch_key == "batch" and "2 batches" in repr(reference)
    assert reference.gene_embeddings().shape == (len(reference.genes), 10)
    assert reference.peak_embeddings().shape == (len(reference.peaks), 10)
    decoder = reference.network.atac_decoder
    assert decoder.feature.shape == (10, len(reference.peaks))
    assert decoder.feature_batch.shape == (2, len(reference.peaks))
    assert decoder.feature_batch.abs().max() > 0  # the offsets were learnt
    z = reference.get_latent()
    assert z.shape == (len(reference.obs_names), 10) and np.isfinite(z).all()


def test_the_batch_mixing_term_mixes_the_batches_in_both_halves(bsim):
    """The default batch_mmd_weight against none, same data and seed: each half's
    neighbours come from more batches (measured: iLISI 1.17 -> 2.67 RNA, 1.50 -> 2.75
    ATAC), and the cell types stay as far apart as without it (ARI 0.62 both)."""
    from factvae.outputs.scores import batch_mixing_scores, clustering_scores
    from factvae.settings import BATCH_MMD_WEIGHT

    strong = factvae.simulate(
        n_cells=420, n_genes=300, n_peaks=2000, seed=5, n_batches=3, batch_shift_sd=1.5
    )
    types, batches = strong.rna.obs["cell_type"], strong.rna.obs["batch"]
    scores = {}
    for weight in (0.0, BATCH_MMD_WEIGHT):
        settings = {"batch_mmd_weight": 0.0} if weight == 0 else {}  # else the default
        model = _model(strong.rna, strong.atac, strong, batch_key="batch", **settings)
        model.fit(max_epochs=15, **FIT)
        assert ("batch_mmd" in model.history[-1]) == (weight > 0)
        scores[weight] = {
            kind: batch_mixing_scores(model.get_latent(kind), batches, types)["ilisi"]
            for kind in ("rna", "atac")
        }
        scores[weight]["ari"] = clustering_scores(model.get_latent(), types, 0)["ari"]
    for kind in ("rna", "atac"):
        assert scores[BATCH_MMD_WEIGHT][kind] > scores[0.0][kind] + 0.2, scores
    assert scores[BATCH_MMD_WEIGHT]["ari"] > scores[0.0]["ari"] - 0.05, scores


def test_augment_decodes_each_cell_in_its_own_batch_or_in_a_chosen_one(reference):
    cells = reference.obs_names[:40]
    own = reference.augment_atac(cells=cells)
    codes = reference._batch_codes[:40]
    assert set(codes) == {0, 1}
    for level, code in (("batch1", 0), ("batch2", 1)):
        chosen = reference.augment_atac(cells=cells, batch=level)
        np.testing.assert_array_equal(chosen[codes == code], own[codes == code])
        assert not np.allclose(chosen[codes != code], own[codes != code])
        # a change of batch moves the shares, not the library: the totals stay the same
        np.testing.assert_allclose(chosen.sum(axis=1), own.sum(axis=1), rtol=1e-4)
    with pytest.raises(FactVAEInputError, match=r"'batch9' is not a batch level.*batch1"):
        reference.augment_atac(cells=cells, batch="batch9")


def test_save_and_load_keep_the_batch_levels_and_outputs(reference, tmp_path):
    back = factvae.FactVAE.load(reference.save(tmp_path / "model"))
    assert list(back.batch_levels) == ["batch1", "batch2"]
    assert back.settings.batch_key == "batch" and back.architecture.n_batches == 2
    np.testing.assert_array_equal(back.get_latent(), reference.get_latent())
    cells = reference.obs_names[:10]
    np.testing.assert_array_equal(
        back.augment_atac(cells=cells, batch="batch2"),
        reference.augment_atac(cells=cells, batch="batch2"),
    )


def test_several_keys_make_one_covariate_of_their_joint_levels(bsim):
    rna, atac, _, _ = _split(bsim)
    rna.obs["donor"] = np.where(np.arange(rna.n_obs) % 2 == 0, "d1", "d2")
    atac.obs["donor"] = rna.obs["donor"].to_numpy()  # may be in atac.obs too: it agrees
    model = _model(rna, atac, bsim, batch_key=["batch", "donor"])
    assert model.settings.batch_key == ["batch", "donor"]
    assert list(model.batch_levels) == ["batch1|d1", "batch1|d2", "batch2|d1", "batch2|d2"]
    assert model.architecture.n_batches == 4
    labels = model.batch_levels[model._batch_codes]
    expected = rna.obs["batch"].astype(str) + "|" + rna.obs["donor"]
    assert list(labels) == list(expected)
    single = _model(rna, atac, bsim, batch_key=["batch"])  # a list of one is that column
    assert single.settings.batch_key == "batch" and len(single.batch_levels) == 2


def test_checkpoints_resume_with_the_levels_and_refuse_other_levels(bsim, tmp_path):
    rna, atac, _, _ = _split(bsim)
    run = dict(checkpoint_dir=tmp_path / "ckpt", checkpoint_every=1, max_epochs=2, **FIT)
    first = _model(rna, atac, bsim, batch_key="batch").fit(**run)
    resumed = _model(rna, atac, bsim, batch_key="batch").fit(**run)  # the run is done: resumed
    assert len(resumed.history) == 2 and list(resumed.batch_levels) == ["batch1", "batch2"]
    np.testing.assert_array_equal(resumed.get_latent(), first.get_latent())
    renamed = rna.copy()
    renamed.obs["batch"] = renamed.obs["batch"].cat.rename_categories({"batch1": "lane1"})
    atac_renamed = atac.copy()
    atac_renamed.obs["batch"] = renamed.obs["batch"].to_numpy()
    with pytest.raises(FactVAEInputError, match="different batch levels"):
        _model(renamed, atac_renamed, bsim, batch_key="batch").fit(**run)
    with pytest.raises(FactVAEInputError, match=r"different .*batch_key"):
        _model(rna, atac, bsim).fit(**run)


# ---- new cells --------------------------------------------------------------------------------


def test_the_training_cells_mapped_again_get_their_own_latent(sim):
    trained = factvae.FactVAE(
        sim.rna, sim.atac, gene_annotation=sim.genes, projected_inputs=True, **SMALL_SETTINGS
    ).fit(max_epochs=15, batch_size=64, progress=False, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unused genes and peaks were in the training data
        for kind, given in (("joint", {"rna": sim.rna, "atac": sim.atac}),
                            ("rna", {"rna": sim.rna}), ("atac", {"atac": sim.atac})):  # fmt: skip
            np.testing.assert_allclose(
                trained.get_latent(kind, **given), trained.get_latent(kind), rtol=1e-5, atol=1e-6
            )
    # another cell order, matched by name across the two modalities
    order = np.random.default_rng(0).permutation(sim.rna.n_obs)
    shuffled = trained.get_latent(rna=sim.rna[order].copy(), atac=sim.atac)
    np.testing.assert_allclose(shuffled, trained.get_latent()[order], rtol=1e-5, atol=1e-6)


def test_missing_and_unknown_features_are_filled_dropped_and_reported(trained, sim):
    keep = ~sim.rna.var_names.isin(trained.genes[:5])
    rna = sim.rna[:, keep].copy()
    extra = sim.atac.copy()
    extra.var_names = [f"{name}-new" if i < 3 else name
                       for i, name in enumerate(extra.var_names)]  # fmt: skip
    with pytest.warns(UserWarning, match=r"5 of the model's \d+ genes are missing .* zeros"):
        z = trained.get_latent("rna", rna=rna)
    assert z.shape == (sim.rna.n_obs, 10) and np.isfinite(z).all()
    with pytest.warns(UserWarning, match=r"3 peaks the model was not built from are dropped"):
        trained.get_latent("atac", atac=extra)
    with pytest.raises(FactVAEInputError, match="needs the new cells' atac counts"):
        trained.get_latent("joint", rna=sim.rna)
    renamed = sim.rna.copy()
    renamed.var_names = [f"x{i}" for i in range(renamed.n_vars)]
    with pytest.raises(FactVAEInputError, match=r"None of the model's .* genes"):
        trained.get_latent("rna", rna=renamed)


def test_map_query_leaves_the_reference_unchanged_and_trains_only_the_new_level(
    reference, bsim, monkeypatch
):
    _, _, rna_q, atac_q = _split(bsim)
    before = _state(reference)
    latent_before = reference.get_latent()
    attributes = {name: copy.deepcopy(getattr(reference, name))
                  for name in ("obs_names", "batch_levels", "_batch_codes", "history",
                               "training_summary", "settings", "architecture")}  # fmt: skip
    expected = reference.get_latent(rna=rna_q, atac=atac_q)

    def refit(*args: object) -> None:  # the query keeps the reference's joint rule as it is
        raise AssertionError("map_query fitted a joint rule on the query cells")

    monkeypatch.setattr("factvae.train.fitting.fit_joint_rule", refit)
    mapped = reference.map_query(rna_q, atac_q, max_epochs=3, batch_size=32, seed=1,
                                 progress=False)  # fmt: skip
    assert mapped.joint_rule is reference.joint_rule
    # the genes' link directions are in the reference's latent space, which the query shares
    assert mapped.gene_evidence is reference.gene_evidence is not None

    after = reference.network.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    for name, value in attributes.items():
        now = getattr(reference, name)
        assert (np.array_equal(now, value) if isinstance(value, np.ndarray)
                else list(now) == list(value) if isinstance(value, pd.Index)
                else now == value), name  # fmt: skip
    np.testing.assert_array_equal(reference.get_latent(), latent_before)

    assert list(mapped.batch_levels) == ["batch1", "batch2", "batch3"]
    assert mapped is not reference and mapped.network is not reference.network
    assert list(mapped.obs_names) == list(rna_q.obs_names)
    assert len(mapped.history) == 3 and mapped.training_summary["new_batch_levels"] == ["batch3"]
    np.testing.assert_allclose(mapped.get_latent(), expected, rtol=1e-6, atol=1e-6)
    grown = mapped.network.state_dict()
    for name, value in before.items():
        if name.endswith("_batch"):  # the reference's rows are bit for bit as they were
            assert torch.equal(grown[name][:2], value), name
            assert grown[name][2:].abs().max() > 0, name  # the new level's row was trained
        else:
            assert torch.equal(grown[name], value), name
    assert mapped.augment_atac(threshold=0.05, batch="batch1").shape == (
        len(mapped.obs_names), len(mapped.peaks),
    )  # fmt: skip
    with pytest.raises(FactVAEInputError, match="map_query"):
        mapped.fit()


def test_query_levels_the_reference_knows_reuse_their_rows(reference, bsim):
    rna, atac, _, _ = _split(bsim)
    known = (rna.obs["batch"] == "batch2").to_numpy()
    before = _state(reference)
    mapped = reference.map_query(rna[known].copy(), atac[known].copy(), progress=False)
    assert list(mapped.batch_levels) == ["batch1", "batch2"]
    assert mapped.training_summary["epochs"] == 0  # nothing new to learn
    for name, value in mapped.network.state_dict().items():
        assert torch.equal(value, before[name]), name
    np.testing.assert_allclose(
        mapped.get_latent(), reference.get_latent()[known], rtol=1e-5, atol=1e-6
    )


def test_encode_batch_maps_a_query_through_new_input_columns_only(bsim):
    rna, atac, rna_q, atac_q = _split(bsim)
    model = _model(rna, atac, bsim, batch_key="batch", encode_batch=True)
    model.fit(max_epochs=2, **FIT)
    layer = model.network.rna_encoder.input_layers()[0]
    assert layer.in_features == SMALL_SETTINGS["n_components"] + 2
    with pytest.raises(FactVAEInputError, match=r"\['batch3'\].*map_query"):
        model.get_latent(rna=rna_q, atac=atac_q)
    before = _state(model)
    mapped = model.map_query(rna_q, atac_q, max_epochs=2, batch_size=32, progress=False)
    for name, value in mapped.network.state_dict().items():
        old = before[name]
        if value.shape == old.shape:
            assert torch.equal(value, old), name
        elif name.endswith("_batch"):
            assert torch.equal(value[:2], old) and value[2:].abs().max() > 0, name
        else:  # the encoders' input layers: the batch3 column was added and trained
            n_old = old.shape[1]
            assert torch.equal(value[:, :n_old], old) and value[:, n_old:].abs().max() > 0
    np.testing.assert_allclose(
        mapped.get_latent(rna=rna_q, atac=atac_q), mapped.get_latent(), rtol=1e-5, atol=1e-6
    )


# ---- errors -----------------------------------------------------------------------------------


def test_each_bad_batch_input_is_a_clear_error(reference, trained, bsim, sim):
    rna, atac, rna_q, atac_q = _split(bsim)
    with pytest.raises(FactVAEInputError, match=r"'sample' is not a column of rna\.obs"):
        _model(rna, atac, bsim, batch_key="sample")
    holes = rna.copy()
    holes.obs["batch"] = holes.obs["batch"].astype(object)
    holes.obs.iloc[:4, holes.obs.columns.get_loc("batch")] = np.nan
    with pytest.raises(FactVAEInputError, match=r"4 missing values .* 'unknown'"):
        _model(holes, atac, bsim, batch_key="batch")
    other = atac.copy()
    other.obs["batch"] = "batch1"
    with pytest.raises(FactVAEInputError, match=r"rna\.obs\['batch'\] and atac\.obs\['batch'\] "
                                                r"disagree"):  # fmt: skip
        _model(rna, other, bsim, batch_key="batch")
    with pytest.raises(FactVAEInputError, match=r"encode_batch=True .* needs batch_key"):
        _model(rna, atac, bsim, encode_batch=True)
    small = _model(rna, atac, bsim, batch_key="batch")
    sizes = rna.obs["batch"].value_counts()
    with pytest.raises(FactVAEInputError, match=r"'batch1' \(\d+ cells\), 'batch2' .*batch_size="):
        small.fit(max_epochs=1, batch_size=int(sizes.max()) + 1, progress=False)
    with pytest.raises(FactVAEInputError, match=r"'batch3' \(\d+ cells\) .*map_query\(\)"):
        reference.map_query(rna_q, atac_q, batch_size=500, progress=False)
    with pytest.raises(FactVAEInputError, match="no batch covariate"):
        trained.augment_atac(batch="batch1")
    with pytest.raises(FactVAEInputError, match="needs a model built with batch_key"):
        trained.map_query(sim.rna, sim.atac)
    no_column = rna_q.copy()
    del no_column.obs["batch"]
    with pytest.raises(FactVAEInputError, match=r"'batch' is not a column of rna\.obs"):
        reference.map_query(no_column, atac_q, progress=False)
