"""The batch-mixing scores: extremes, a hand-computed LISI, and bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from factvae.outputs.scores import batch_mixing_scores


def _two_types(rng: np.random.Generator, n: int, batch_offset: float) -> tuple:
    """Two well-separated cell types in 5 dimensions, two batches each, the batches
    ``batch_offset`` apart along another axis."""
    types = np.repeat([0, 1], n)
    batches = np.tile(np.repeat([0, 1], n // 2), 2)
    points = rng.normal(size=(2 * n, 5))
    points[:, 0] += 20.0 * types
    points[:, 1] += batch_offset * batches
    return points, np.array(["b1", "b2"])[batches], np.array(["t1", "t2"])[types]


def test_mixed_batches_score_near_the_top_and_separated_near_the_bottom() -> None:
    rng = np.random.default_rng(0)
    mixed = batch_mixing_scores(*_two_types(rng, 300, 0.0))
    separated = batch_mixing_scores(*_two_types(rng, 300, 30.0))
    assert mixed["batch_asw"] > 0.95 and separated["batch_asw"] < 0.2
    assert mixed["ilisi"] > 1.8 and separated["ilisi"] < 1.05
    assert mixed["ilisi_scaled"] == pytest.approx(mixed["ilisi"] - 1.0)


def test_lisi_is_the_inverse_simpson_index_of_equally_near_neighbours() -> None:
    # Every cell at the same distance from every other (the corners of a simplex), so the
    # kernel weights are equal whatever beta: LISI = 1 / sum p_b^2 of the neighbours exactly.
    n = 12
    points = np.eye(n)
    batches = np.array(["a"] * 8 + ["b"] * 4)
    labels = np.array(["t"] * n)
    scores = batch_mixing_scores(points, batches, labels, perplexity=n / 3)
    # cell of batch a: 11 neighbours, 7 a and 4 b; of batch b: 8 a and 3 b
    lisi_a = 1.0 / ((7 / 11) ** 2 + (4 / 11) ** 2)
    lisi_b = 1.0 / ((8 / 11) ** 2 + (3 / 11) ** 2)
    assert scores["ilisi"] == pytest.approx(np.median([lisi_a] * 8 + [lisi_b] * 4))


def test_a_type_in_one_batch_only_is_left_out_of_the_asw() -> None:
    rng = np.random.default_rng(1)
    points, batches, labels = _two_types(rng, 200, 30.0)
    batches = np.where(labels == "t2", "b1", batches)  # type t2 seen in one batch
    only_t1 = batch_mixing_scores(points[labels == "t1"], batches[labels == "t1"],
                                  labels[labels == "t1"])  # fmt: skip
    assert batch_mixing_scores(points, batches, labels)["batch_asw"] == pytest.approx(
        only_t1["batch_asw"]
    )


def test_inputs_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per cell"):
        batch_mixing_scores(np.zeros((5, 2)), ["a"] * 4, ["t"] * 5)
