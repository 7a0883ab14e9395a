"""Helpers for the R wrapper: every value that crosses reticulate here is a numpy array, a list
of strings or a dict of those, because reticulate 1.28 cannot convert scipy.sparse matrices and
its pandas conversion is fragile. Seurat stores features x cells; the model wants cells x features.
"""

from __future__ import annotations

import _thread
import ctypes
import os
import signal
import threading
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.settings import RUN_DEFAULTS, defaults
from factvae.train import interrupts

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_captures: list = []


def start_warning_capture() -> None:
    """Record warnings until ``stop_warning_capture``, so R can raise factvae's as R warnings."""
    context = warnings.catch_warnings(record=True)
    log = context.__enter__()
    warnings.simplefilter("always")
    _captures.append((context, log))


def stop_warning_capture() -> list:
    """factvae's own warning messages since the matching start; others are shown as usual.

    factvae warns with plain UserWarning, and its stacklevel can point outside the package (to
    the R caller), so the category counts as well as the file; libraries' deprecation notices and
    UserWarning subclasses are left to Python.
    """
    context, log = _captures.pop()
    context.__exit__(None, None, None)
    ours = []
    for record in log:
        if record.category is UserWarning or os.path.abspath(record.filename).startswith(
            _PACKAGE_DIR
        ):
            ours.append(str(record.message))
        else:
            # Through the filters the capture's "always" bypassed, so that what Python hides
            # (a library's DeprecationWarning, such as torch's own) stays hidden.
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    return ours


_SIGACTION_BYTES = 1024  # room for any libc's struct sigaction (glibc's is 152 bytes)
_IMPORT_RECHECK_S = 0.2


def install_interrupt_handler() -> bool:
    """Answer Ctrl-C in the Python code R runs without calling back into R.

    reticulate before 1.37 answers SIGINT with a Python handler that asks R, by calling an R
    function, whether the interrupt is still pending. R takes the pending interrupt inside that
    very call and jumps out of it; the jump crosses Python's C frames as a C++ exception, which
    unwinds them behind the interpreter's back, and a later Python call crashes the session
    (segfault). This handler reads R's flag in memory instead, as reticulate 1.37 does in C: an
    interrupt R has already taken (it came while R code ran) is ignored; a pending one is taken
    from R and passed to :func:`factvae.train.interrupts.request`, so training stops at its
    next step. reticulate's C-level handler, which sets the flag, stays, now with SA_RESTART:
    without it the SIGINT broke R's read of its input, and an idle non-interactive session
    (callr's) took that for the end of its input and quit. Returns whether it was installed
    (not outside R, nor where there is no POSIX ``sigaction``).
    """
    process = ctypes.CDLL(None)
    try:
        pending = ctypes.c_int.in_dll(process, "R_interrupts_pending")
        sigaction = process.sigaction
    except (ValueError, AttributeError):
        return False
    c_level = ctypes.create_string_buffer(_SIGACTION_BYTES)
    if sigaction(signal.SIGINT, None, c_level) != 0:
        return False
    signal.signal(signal.SIGINT, _r_interrupt_handler(pending))
    # signal.signal also put Python's own C handler in place: reticulate's goes back
    if sigaction(signal.SIGINT, c_level, None) != 0:
        return False
    signal.siginterrupt(signal.SIGINT, False)
    return True


def _r_interrupt_handler(pending: ctypes.c_int) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        if not pending.value:
            return  # R has taken it: it came while R code ran
        if _importing(frame):
            # A module stopped half-way stays broken for the session (torch._dynamo, which a
            # first fit imports, then fails every later fit): the interrupt waits for the
            # import, still pending for R should Python return first.
            threading.Timer(_IMPORT_RECHECK_S, _thread.interrupt_main).start()
            return
        pending.value = 0
        interrupts.request()

    return handler


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def import_training_modules() -> None:
    """Import now what the first fit would: torch's optimisers import torch._dynamo (some
    1,500 modules, seconds) when the first is made, and an interrupt waits for an import to
    end (see ``install_interrupt_handler``), so Ctrl-C in a first fit would wait that long."""
    import torch._dynamo  # noqa: F401


def take_interrupt_report() -> str | None:
    """What the last fit stopped by Ctrl-C said, for R, which only sees the interrupt."""
    return interrupts.take_report()


def anndata_from_counts(counts, cells, features, var=None, obs=None):
    """AnnData (cells x features, CSR) from an R dgCMatrix of features x cells.

    ``var`` and ``obs`` are dicts of columns (one value per feature, per cell); ``obs`` carries
    the cells' batch labels (strings) for ``batch_key``.

    reticulate hands a dgCMatrix over as a CSC matrix that views R's memory; its transpose is the
    CSR cells x features matrix the model wants, and copying it detaches it from R's memory.
    """
    import anndata

    matrix = sp.csc_matrix(counts).T.tocsr(copy=True).astype(np.float32)
    var_frame = pd.DataFrame(index=pd.Index([str(f) for f in features]))
    if var is not None:
        for key, values in dict(var).items():
            var_frame[key] = np.asarray(values)
    obs_frame = pd.DataFrame(index=pd.Index([str(c) for c in cells]))
    if obs is not None:
        for key, values in dict(obs).items():
            obs_frame[key] = [str(v) for v in _strings(values)]
    return anndata.AnnData(X=matrix, obs=obs_frame, var=var_frame)


def csc_parts(matrix) -> dict:
    """The slots of an R dgCMatrix (i, p, x, Dim) for a sparse matrix in R's orientation."""
    csc = sp.csc_matrix(matrix)
    csc.sum_duplicates()
    csc.sort_indices()
    return {
        "i": csc.indices.astype(np.int32),
        "p": csc.indptr.astype(np.int32),
        "x": csc.data.astype(np.float64),
        "dim": np.asarray(csc.shape, dtype=np.int32),
    }


def frame_columns(frame: pd.DataFrame) -> dict:
    """A DataFrame as a dict of plain columns (strings as lists), so R gets a list of vectors."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[str(column)] = values.to_numpy(dtype=np.float64)
        elif pd.api.types.is_bool_dtype(values):
            out[str(column)] = values.to_numpy(dtype=bool)
        else:
            out[str(column)] = [str(v) for v in values]
    return out


def model_summary(model) -> dict:
    """Cell, gene and peak names of a trained model, and its embeddings as plain arrays."""
    genes = model.gene_embeddings()
    peaks = model.peak_embeddings()
    return {
        "cells": [str(c) for c in model.obs_names],
        "genes": [str(g) for g in genes.index],
        "gene_embeddings": genes.to_numpy(dtype=np.float64),
        "peaks": [str(p) for p in peaks.index],
        "peak_embeddings": peaks.to_numpy(dtype=np.float64),
    }


def model_features(model) -> dict:
    """What new cells must match: the model's genes and peaks, batch column(s) and levels."""
    return {
        "genes": [str(g) for g in model.genes],
        "peaks": [str(p) for p in model.peaks],
        "batch_keys": [str(k) for k in model.settings.batch_keys],
        "batch_levels": [str(level) for level in model.batch_levels],
    }


def augment_chunk(
    model,
    cells,
    peaks,
    threshold=None,
    chunk_size=RUN_DEFAULTS.chunk_size,
    latent=RUN_DEFAULTS.augment_latent,
):
    """Augmented ATAC for some cells, as peaks x cells: a dense array or dgCMatrix parts."""
    values = model.augment_atac(
        cells=list(cells),
        peaks=None if peaks is None else list(peaks),
        chunk_size=int(chunk_size),
        threshold=threshold,
        latent=str(latent),
    )
    if sp.issparse(values):
        return {"sparse": True, **csc_parts(values.T)}
    # The transpose of a C-ordered array is Fortran-ordered, which reticulate copies as is.
    return {"sparse": False, "values": np.asarray(values).T}


def infer_links(
    model,
    window=RUN_DEFAULTS.link_window,
    n_background=RUN_DEFAULTS.n_background,
    seed=RUN_DEFAULTS.seed,
    score=RUN_DEFAULTS.link_score,
    rna=None,
    genes=None,
    annotation=None,
) -> dict:
    """Gene-peak links as plain columns (see ``FactVAE.infer_links``): ``rna`` is the cells'
    RNA AnnData (from ``anndata_from_counts``), so every detected gene can be linked;
    ``genes`` (R's ``link.genes``) the chosen ones; ``annotation`` the genes' coordinates."""
    links = model.infer_links(
        window=int(window), n_background=int(n_background), seed=int(seed), score=str(score),
        rna=rna, genes=_strings(genes) if genes is not None else None,
        gene_annotation=annotation,
    )  # fmt: skip
    return frame_columns(links)


def simulation_parts(n_cells=600, seed=0) -> dict:
    """The simulator's data as R-ready parts: counts features x cells, names and tables."""
    from factvae.data.simulate import simulate

    sim = simulate(n_cells=int(n_cells), seed=int(seed))
    return {
        "rna": csc_parts(sim.rna.X.T),
        "atac": csc_parts(sim.atac.X.T),
        "cells": [str(c) for c in sim.rna.obs_names],
        "genes": [str(g) for g in sim.rna.var_names],
        "peaks": [str(p) for p in sim.atac.var_names],
        "cell_type": [str(c) for c in sim.rna.obs["cell_type"]],
        "annotation": frame_columns(sim.genes[["chrom", "start", "end", "gene_name", "strand"]]),
        "links": frame_columns(sim.links[["gene", "peak"]]),
    }


def default_settings(preset: str = "default") -> dict:
    """Every default of ``preset`` (model and run), for R's tests and help to compare with."""
    return defaults(preset)


def choices() -> dict:
    """The values an output option takes, so R refuses any other before training starts."""
    from factvae.outputs.augment import AUGMENT_LATENTS
    from factvae.outputs.links import LINK_SCORES

    return {"link_score": list(LINK_SCORES), "augment_latent": list(AUGMENT_LATENTS)}


# ---- genomic rules, owned here and called by R (never re-implemented there) --------------
# The one definition of each rule is in factvae.data.genomics (peak names, gene tidying,
# chromosome names) and factvae.data.prior (G2P); these wrappers only convert. reticulate
# passes a length-1 R vector as a scalar, hence _strings/_numbers.


def _strings(values) -> list:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


def _numbers(values) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=np.float64))


def peak_ranges_from_names(names) -> dict:
    """Peak names read by ``parse_peak_names``: chrom, 0-based start and end (as doubles)."""
    from factvae.data.genomics import parse_peak_names

    return frame_columns(parse_peak_names(_strings(names)))


def peak_names_from_ranges(chrom, start, end) -> list:
    """``chrom-start-end`` names of 0-based, half-open intervals (``format_peak_names``)."""
    from factvae.data.genomics import format_peak_names

    first, last = _numbers(start), _numbers(end)
    return [str(n) for n in format_peak_names(_strings(chrom), first, last)]


def _gene_frame(genes: dict) -> pd.DataFrame:
    columns = {
        "chrom": _strings(genes["chrom"]),
        "start": _numbers(genes["start"]),
        "end": _numbers(genes["end"]),
        "gene_name": _strings(genes["gene_name"]),
        "strand": _strings(genes["strand"]),
    }
    if genes.get("tx_id") is not None:
        columns["tx_id"] = _strings(genes["tx_id"])
    return pd.DataFrame(columns)


def gene_table(genes: dict, peak_chroms) -> dict:
    """R's gene annotation (0-based columns) tidied by ``read_gene_annotation``, one row per
    gene in the order of its first row, its chromosomes renamed to the peaks' style; an error
    when none of them is a peak chromosome."""
    from factvae.data.genomics import (
        check_shared_chromosomes,
        harmonise_chromosome_names,
        read_gene_annotation,
    )

    table = read_gene_annotation(_gene_frame(genes))
    peak_chroms = _strings(peak_chroms)
    table["chrom"] = harmonise_chromosome_names(table["chrom"], peak_chroms)
    check_shared_chromosomes(table["chrom"], peak_chroms)
    return frame_columns(table.reset_index(names="gene_name"))


def gene_to_peak_pairs(genes: dict, peaks: dict, upstream) -> dict:
    """The G2P pairs (``gene_to_peak``) as 0-based positions in R's genes and peaks.

    ``genes``: chrom, start (0-based), end, gene_name, strand; ``peaks``: chrom, start
    (0-based), end and name.
    """
    from factvae.data.prior import gene_to_peak

    gene_frame = _gene_frame(genes)
    names = _strings(peaks["name"])
    peak_frame = pd.DataFrame(
        {
            "chrom": _strings(peaks["chrom"]),
            "start": _numbers(peaks["start"]).astype(np.int64),
            "end": _numbers(peaks["end"]).astype(np.int64),
        },
        index=pd.Index(names, dtype=object),
    )
    prior = gene_to_peak(gene_frame, peak_frame, upstream=int(upstream))
    coo = prior.matrix.tocoo()
    rows = pd.Index(gene_frame["gene_name"]).get_indexer(prior.genes[coo.row])
    order = np.lexsort((coo.col, rows))
    return {"gene": rows[order].astype(np.int32), "peak": coo.col[order].astype(np.int32)}


def check_genome_build(genes: dict, peaks: dict, rna_genes) -> dict:
    """``warn_if_other_build`` on R's gene table (0-based, on the peaks' chromosome names) and
    peaks (chrom, start, end), over the annotated genes among ``rna_genes``: R warns through the
    Python rule, so both languages give one answer. Returns the rates."""
    from factvae.data.builds import warn_if_other_build

    frame = _gene_frame(genes)
    frame = frame[frame["gene_name"].isin(set(_strings(rna_genes)))]
    peak_frame = pd.DataFrame(
        {
            "chrom": _strings(peaks["chrom"]),
            "start": _numbers(peaks["start"]).astype(np.int64),
            "end": _numbers(peaks["end"]).astype(np.int64),
        }
    )
    rates = warn_if_other_build(frame, peak_frame)
    return {
        "at_tss": rates.at_tss,
        "away": rates.away,
        "n_genes": rates.n_genes,
        "ratio": rates.ratio,
        "warned": rates.looks_like_another_build,
    }
