"""The genome build check (factvae.data.builds): exact window arithmetic, and the warning that
``FactVAE`` gives before any work when the genes' TSSs miss the peaks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import factvae
from factvae.data.builds import MIN_GENES, TSSHitRates, tss_hit_rates, warn_if_other_build

PEAKS = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [10_000, 50_000, 7_000],
        "end": [10_500, 90_000, 7_001],
    }
)


def _genes(rows: list[tuple[str, int, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["chrom", "start", "end", "strand"])
    return frame.set_index(pd.Index([f"G{i}" for i in range(len(frame))]))


def test_a_window_hits_a_peak_exactly_when_the_half_open_intervals_overlap() -> None:
    """TSS +- 1,000 bases is [tss - 1000, tss + 1001); peaks are 0-based [start, end)."""
    genes = _genes(
        [
            ("chr1", 8_999, 20_000, "+"),  # [7999, 10000): ends where the peak starts
            ("chr1", 9_000, 20_000, "+"),  # [8000, 10001): holds the peak's first base
            ("chr1", 9_000, 9_001, "-"),  # TSS 9,000 on the minus strand: the same hit
            ("chr1", 11_500, 30_000, "+"),  # [10500, 12501): starts at the peak's end
            ("chr1", 11_499, 30_000, "+"),  # [10499, 12500): overlaps its last base
            ("chr1", 1_000, 70_001, "-"),  # TSS 70,000 inside a long peak that starts earlier
            ("chr2", 5_999, 6_000, "-"),  # TSS 5,999: window [4999, 7000) stops at 7,000
            ("chr2", 6_000, 6_001, "-"),  # TSS 6,000: [5000, 7001) covers base 7,000
            ("chr3", 100, 200, "+"),  # not a peak chromosome: left out
        ]
    )
    rates = tss_hit_rates(genes, PEAKS)
    assert rates.n_genes == 8
    assert rates.at_tss == pytest.approx(5 / 8)


def test_the_background_reads_the_same_windows_100_to_200_kb_away() -> None:
    peaks = pd.DataFrame({"chrom": ["chr1"], "start": [300_000], "end": [300_100]})
    genes = _genes([("chr1", 200_000, 210_000, "+"), ("chr1", 400_000, 410_000, "+")])
    rates = tss_hit_rates(genes, peaks)
    # +100 kb of the first and -100 kb of the second land on the peak: 2 of 4 x 2 windows
    assert (rates.at_tss, rates.away) == (0.0, pytest.approx(2 / 8))


def _tss_enriched(n_genes: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Half the genes with a peak on their TSS, 2,000 peaks scattered over 100 Mb."""
    rng = np.random.default_rng(seed)
    tss = np.sort(rng.choice(np.arange(1_000_000, 100_000_000, 50_000), n_genes, replace=False))
    genes = _genes([("chr1", int(t), int(t) + 20_000, "+") for t in tss])
    starts = np.concatenate([tss[::2] - 200, rng.integers(1_000_000, 100_000_000, 2_000)])
    peaks = pd.DataFrame({"chrom": "chr1", "start": starts, "end": starts + 400})
    return genes, peaks


def test_another_builds_genes_warn_once_naming_both_rates_and_the_cause() -> None:
    genes, peaks = _tss_enriched(300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matched = warn_if_other_build(genes, peaks)
    assert matched.ratio > 3 and not matched.looks_like_another_build
    moved = genes.assign(start=genes["start"] + 307_919, end=genes["end"] + 307_919)
    with pytest.warns(UserWarning) as caught:
        rates = warn_if_other_build(moved, peaks)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "genome build mismatch" in message
    assert f"{100 * rates.at_tss:.1f}% of 300 annotated genes" in message
    assert f"against {100 * rates.away:.1f}% 100-200 kb away ({rates.ratio:.1f}x" in message
    # too few genes to judge: silent whatever the rates
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        few = warn_if_other_build(moved.iloc[: MIN_GENES - 1], peaks)
    assert few.n_genes == MIN_GENES - 1 and not few.looks_like_another_build


def test_rates_without_a_background_never_warn() -> None:
    assert not TSSHitRates(at_tss=0.0, away=0.0, n_genes=1000).looks_like_another_build


def test_factvae_warns_before_any_work_and_check_build_false_skips_it() -> None:
    sim = factvae.simulate(n_cells=120, n_genes=300, n_peaks=1500, seed=2)
    genes = sim.genes.copy()
    # every gene moved 300 kb along its chromosome: TSSs away from their peaks, loci kept
    moved = genes.assign(start=genes["start"] + 300_000, end=genes["end"] + 300_000)
    settings = {"n_hvg": 100, "n_components": 8, "n_latent": 4}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factvae.FactVAE(sim.rna, sim.atac, gene_annotation=moved, **settings)
        except factvae.FactVAEInputError:
            pass  # the moved loci may overlap no peak: that error comes after the warning
    builds = [w for w in caught if "genome build" in str(w.message)]
    assert len(builds) == 1 and builds[0].filename == __file__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factvae.FactVAE(sim.rna, sim.atac, gene_annotation=genes, **settings)
        try:
            factvae.FactVAE(sim.rna, sim.atac, gene_annotation=moved, check_build=False, **settings)
        except factvae.FactVAEInputError:
            pass
    assert not [w for w in caught if "genome build" in str(w.message)]
