"""The gene-to-peak prior from coordinates: strands, upstream extension, chromosome names."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factvae import FactVAEInputError, gene_to_peak
from factvae.data.genomics import format_peak_names, parse_peak_names, read_gene_annotation
from factvae.data.prior import GeneToPeak, coerce_g2p

GENES = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [10_000, 50_000, 5_000],
        "end": [20_000, 60_000, 6_000],
        "gene_name": ["PLUS", "MINUS", "OTHER"],
        "strand": ["+", "-", "+"],
    }
)
PEAKS = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr1", "chr1", "chr1", "chr2"],
        "start": [8_500, 15_000, 20_500, 60_500, 49_000, 100],
        "end": [9_000, 15_500, 21_000, 61_000, 49_500, 200],
    },
    index=["up_plus", "body_plus", "down_plus", "up_minus", "down_minus", "far"],
)


def _pairs(prior):
    return set(map(tuple, prior.pairs().to_numpy()))


def test_gene_body_plus_upstream_is_strand_aware():
    prior = gene_to_peak(GENES, PEAKS, upstream=2000)
    assert _pairs(prior) == {
        ("PLUS", "up_plus"),  # 1.5 kb before the + TSS
        ("PLUS", "body_plus"),
        ("MINUS", "up_minus"),  # after the end of a - strand gene is upstream
    }
    assert prior.matrix.shape == (3, 6)
    assert list(prior.genes) == ["PLUS", "MINUS", "OTHER"]
    assert set(prior.matrix.data) == {1.0}


def test_upstream_zero_keeps_only_bodies_and_half_open_ends():
    prior = gene_to_peak(GENES, PEAKS, upstream=0)
    assert _pairs(prior) == {("PLUS", "body_plus")}
    touching = PEAKS.assign(start=[20_000] * 6, end=[20_100] * 6).iloc[:1]
    assert gene_to_peak(GENES, touching, upstream=0).nnz == 0  # BED end is exclusive


def test_chromosome_styles_are_harmonised():
    numeric = GENES.assign(chrom=GENES["chrom"].str.replace("chr", ""))
    assert _pairs(gene_to_peak(numeric, PEAKS)) == _pairs(gene_to_peak(GENES, PEAKS))
    peaks_numeric = PEAKS.assign(chrom=PEAKS["chrom"].str.replace("chr", ""))
    assert _pairs(gene_to_peak(GENES, peaks_numeric)) == _pairs(gene_to_peak(GENES, PEAKS))


def test_no_shared_chromosome_is_a_clear_error():
    other = GENES.assign(chrom=["chrX", "chrX", "chrY"])
    with pytest.raises(FactVAEInputError, match="share no chromosome"):
        gene_to_peak(other, PEAKS)


def test_bed_and_gtf_files(tmp_path):
    bed = tmp_path / "genes.bed"
    GENES[["chrom", "start", "end", "gene_name", "strand"]].to_csv(
        bed, sep="\t", header=False, index=False
    )
    bed6 = tmp_path / "genes6.bed"
    GENES.assign(score=0)[["chrom", "start", "end", "gene_name", "score", "strand"]].to_csv(
        bed6, sep="\t", header=False, index=False
    )
    gtf = tmp_path / "genes.gtf"
    lines = [
        f'{r.chrom}\tsrc\tgene\t{r.start + 1}\t{r.end}\t.\t{r.strand}\t.\tgene_id "id{i}"; '
        f'gene_name "{r.gene_name}";'
        for i, r in enumerate(GENES.itertuples())
    ]
    gtf.write_text("#header\n" + "\n".join(lines) + "\n")
    want = _pairs(gene_to_peak(GENES, PEAKS))
    for path in (bed, bed6, gtf):
        assert _pairs(gene_to_peak(path, PEAKS)) == want, path


def test_annotation_without_usable_rows():
    bad = GENES.assign(start=[5, 5, 5], end=[1, 1, 1])
    with pytest.raises(FactVAEInputError, match="no usable rows"):
        read_gene_annotation(bad)
    with pytest.raises(FactVAEInputError, match="needs columns"):
        read_gene_annotation(pd.DataFrame({"a": [1]}))


def test_duplicated_gene_names_keep_the_longest_span():
    dup = pd.concat([GENES, GENES.iloc[[0]].assign(end=10_500)], ignore_index=True)
    genes = read_gene_annotation(dup)
    assert genes.loc["PLUS", "end"] == 20_000


@pytest.mark.parametrize("name", ["chr1-100-200", "chr1:100-200", "chr1_100_200", "1-100-200"])
def test_peak_name_styles(name):
    # Signac's reading: the bases 100..200 (1-based, inclusive) are [99, 200) here.
    frame = parse_peak_names([name])
    assert frame.iloc[0].tolist()[1:] == [99, 200]


def test_peak_name_of_one_base_and_bed_names():
    frame = parse_peak_names(["chr1-100-100", "chr1-0-50"])
    assert frame[["start", "end"]].to_numpy().tolist() == [[99, 100], [0, 50]]
    bed = PEAKS.assign(start=[8_500, 0, 1, 2, 3, 4])
    assert format_peak_names(bed["chrom"], bed["start"], bed["end"]).tolist()[:2] == [
        "chr1-8501-9000",
        "chr1-1-15500",
    ]


@pytest.mark.parametrize("name", ["peak1", "chr1-200", "chr1-300-100", "chr1-0-0"])
def test_unparseable_peak_names(name):
    with pytest.raises(FactVAEInputError, match="peak"):
        parse_peak_names([name])


def test_g2p_from_pairs_matrix_and_subset():
    genes, peaks = pd.Index(["A", "B"]), pd.Index(["p1", "p2", "p3"])
    from_pairs = coerce_g2p(
        pd.DataFrame({"gene": ["A", "B", "Z"], "peak": ["p3", "p1", "p1"]}), genes, peaks
    )
    assert _pairs(from_pairs) == {("A", "p3"), ("B", "p1")}
    dense = np.array([[0, 0, 2], [1, 0, 0]])
    assert _pairs(coerce_g2p(dense, genes, peaks)) == _pairs(from_pairs)
    with pytest.raises(FactVAEInputError, match="shape"):
        coerce_g2p(sp.csr_matrix((3, 3)), genes, peaks)
    full = GeneToPeak(sp.csr_matrix(dense, dtype=np.float32), genes, peaks)
    sub = full.subset(pd.Index(["B"]), pd.Index(["p3", "p1"]))
    assert sub.matrix.toarray().tolist() == [[0, 1]]
