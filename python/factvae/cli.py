"""The ``factvae`` command: train on files, write embeddings/links/model, or run a demo.

``fit`` and ``demo`` share :func:`run_fit`, so the demo exercises exactly what users run.
Input problems end with ``factvae: error: ...`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import anndata
import pandas as pd
import scipy.sparse as sp

from factvae import __version__
from factvae.api import FactVAE
from factvae.data.readers import read_10x_multiome, read_g2p, read_pair
from factvae.errors import FactVAEInputError, TrainingDivergedError
from factvae.io.mudata import MODALITIES as MUDATA_MODALITIES
from factvae.io.mudata import add_results, read_h5mu
from factvae.io.mudata import modalities as mudata_modalities
from factvae.outputs.links import LINK_SCORES
from factvae.outputs.scores import clustering_scores
from factvae.settings import ATAC_WEIGHT, ATAC_WEIGHT_PEAKS, MODEL_DEFAULTS, PRESETS, RUN_DEFAULTS
from factvae.train.checkpoints import CHECKPOINT_FILE
from factvae.train.devices import PRECISIONS
from factvae.train.distributed import current_group

EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130
CHECKPOINTS = "checkpoints"
MODEL_DIR, EMBEDDINGS_FILE = "model", "embeddings.tsv.gz"
LINKS_FILE, AUGMENTED_FILE = "links.tsv.gz", "augmented_atac.h5ad"
RESULTS_H5MU = "factvae.h5mu"
DEMO_EPOCHS = 60
# The demo's 800 cells carry too little ATAC signal for the default weight (0.002 at 5,000
# peaks): its planted links score AUROC 0.739 / 0.738 / 0.636 there against 0.907 / 0.913 /
# 0.888 at 0.2 (seeds 0-2, `factvae demo --seed S --atac-weight W`); k-means ARI 0.998-1.000
# either way.
DEMO_ATAC_WEIGHT = 0.2


def _rows(title: str, rows: list[tuple[str, str]]) -> str:
    """An epilog table; argparse would re-wrap it, so it is laid out here."""
    lines = [title]
    for name, text in rows:
        first, *rest = text.split("\n")
        lines.append(f"  {name:<22}{first}")
        lines.extend(f"  {'':<22}{more}" for more in rest)
    return "\n".join(lines)


_FIT_OUTPUTS = _rows(
    "outputs (in --out DIR):",
    [
        (f"{MODEL_DIR}/", f"the trained model: factvae.FactVAE.load('DIR/{MODEL_DIR}')"),
        (
            EMBEDDINGS_FILE,
            "cells x 2*latent posterior means, columns atac_1..atac_L then\n"
            "rna_1..rna_L: all columns together are the joint embedding,\n"
            "each prefix alone is that modality's embedding",
        ),
        (
            LINKS_FILE,
            "candidate gene-peak pairs within --links-window of the TSS of every\n"
            "gene detected in >= 1% of cells, best first: gene, peak, score\n"
            "(--links-score) and its ingredients covariation, activity, contact, abc;\n"
            "zscore, pvalue, qvalue: covariation against peaks of matched accessibility\n"
            "on other chromosomes (LinkPeaks); zscore_cis, pvalue_cis, qvalue_cis:\n"
            "against pairs at the same distance; distance (signed, negative =\n"
            "upstream), in_prior, modelled, chrom, tss",
        ),
        (
            AUGMENTED_FILE,
            "with --augment: cells x peaks augmented accessibility (dense, or\n"
            "sparse keeping values >= --augment-threshold)",
        ),
        (
            RESULTS_H5MU,
            "with --h5mu: the input MuData with the results in obsm (X_factvae,\n"
            "X_factvae_rna, X_factvae_atac), uns (factvae_links) and the ATAC\n"
            "modality's layer factvae_augmented (with --augment)",
        ),
        (f"{CHECKPOINTS}/", "training state every --checkpoint-every epochs, for --resume"),
    ],
)
_DEMO_OUTPUTS = _rows(
    "outputs (in --out DIR):",
    [
        ("input/", "the simulated rna.h5ad (cell types in obs), atac.h5ad, genes.bed"),
        ("the rest", "as 'factvae fit' writes it (see factvae fit --help)"),
    ],
)


@dataclass(frozen=True)
class FitOptions:
    """What ``factvae fit`` was asked to do (the demo builds one directly)."""

    out: Path
    rna: Path | None = None
    atac: Path | None = None
    tenx: Path | None = None
    h5mu: Path | None = None
    rna_modality: str = MUDATA_MODALITIES[0]
    atac_modality: str = MUDATA_MODALITIES[1]
    annotation: Path | None = None
    g2p: Path | None = None
    epochs: int | None = None
    preset: str = "default"
    early_stopping: bool | None = None
    validation_fraction: float | None = None
    patience: int | None = None
    batch_size: int = RUN_DEFAULTS.batch_size
    latent: int = MODEL_DEFAULTS.n_latent
    hvg: int = MODEL_DEFAULTS.n_hvg
    atac_weight: float | None = MODEL_DEFAULTS.atac_recon_weight
    device: str = RUN_DEFAULTS.device
    precision: str = RUN_DEFAULTS.precision
    seed: int = RUN_DEFAULTS.seed
    augment: bool = False
    augment_threshold: float | None = None
    links: bool = True
    links_window: int = RUN_DEFAULTS.link_window
    links_score: str = RUN_DEFAULTS.link_score
    checkpoint_every: int = RUN_DEFAULTS.checkpoint_every
    resume: bool = False
    quiet: bool = False
    backed: bool = False
    batch_key: list[str] | None = None
    encode_batch: bool = MODEL_DEFAULTS.encode_batch

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FitOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


@dataclass
class FitResult:
    """The trained model and what was written, for the summary and the demo's scores."""

    model: FactVAE
    links: pd.DataFrame | None
    written: list[tuple[str, Path, str]]
    train_seconds: float
    total_seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``factvae`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return int(exit_.code or 0)
    if args.command == "fit" and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_ranks(args.nproc, list(sys.argv[1:] if argv is None else argv))
    # a scheduler's SIGTERM stops the run like Ctrl-C: the last checkpoint stays for --resume
    signal.signal(signal.SIGTERM, _interrupt)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args.command == "fit":
                result = run_fit(FitOptions.from_args(args))
                if result.written:
                    print_summary(result)
            else:
                run_demo(args)
        except (FactVAEInputError, OSError) as err:
            print(f"factvae: error: {err}", file=sys.stderr)
            return EXIT_INPUT
        except TrainingDivergedError as err:
            print(f"factvae: error: {err}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            hint = ""
            if args.command == "fit" and args.checkpoint_every > 0:
                hint = (
                    f"; run the same command with --resume to continue from the last checkpoint"
                    f" in {Path(args.out) / CHECKPOINTS}"
                )
            print(f"\nfactvae: interrupted{hint}", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _launch_ranks(nproc: int, argv: list[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes (gloo on CPU, NCCL on GPU)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "factvae.cli", *rest]
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factvae",
        description="FactVAE for paired single-cell RNA + ATAC (multiome) data: joint cell "
        "embeddings, gene-peak links and augmented ATAC.",
    )
    parser.add_argument("--version", action="version", version=f"factvae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="train on your data and write embeddings, links and the model",
        description="Train FactVAE on paired RNA + ATAC counts and write its outputs.",
        epilog=_FIT_OUTPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = fit.add_argument_group("input (either --rna and --atac, or --10x)")
    data.add_argument("--rna", type=Path, metavar="RNA.h5ad", help="RNA raw counts, cells x genes")
    data.add_argument(
        "--atac", type=Path, metavar="ATAC.h5ad", help="ATAC raw counts, cells x peaks"
    )
    data.add_argument(
        "--10x",
        dest="tenx",
        type=Path,
        metavar="FOLDER",
        help="Cell Ranger ARC filtered_feature_bc_matrix folder (or its .h5 file)",
    )
    data.add_argument(
        "--h5mu",
        type=Path,
        metavar="FILE",
        help="a MuData .h5mu holding both modalities; the results are also written into a "
        f"copy of it, {RESULTS_H5MU} (embeddings in obsm, links in uns, augmented ATAC as the "
        "ATAC modality's layer factvae_augmented)",
    )
    data.add_argument(
        "--rna-modality",
        default=MUDATA_MODALITIES[0],
        metavar="NAME",
        help="the RNA modality of --h5mu (default: %(default)s)",
    )
    data.add_argument(
        "--atac-modality",
        default=MUDATA_MODALITIES[1],
        metavar="NAME",
        help="the ATAC modality of --h5mu (default: %(default)s)",
    )
    data.add_argument(
        "--backed",
        action="store_true",
        help="keep the .h5ad counts on disk and read them a block of cells at a time, so "
        "memory does not grow with the number of cells (needs .X stored as CSR)",
    )
    prior = fit.add_argument_group("gene-peak prior (--annotation, --g2p or both)")
    prior.add_argument(
        "--annotation",
        type=Path,
        metavar="BED/GTF",
        help="gene coordinates keyed by the RNA gene names; needed for links",
    )
    prior.add_argument(
        "--g2p",
        type=Path,
        metavar="FILE",
        help="ready prior instead of the annotation overlap: a .npz scipy sparse genes x peaks "
        "matrix in input order, or a TSV with columns gene and peak",
    )
    batches = fit.add_argument_group("several samples")
    batches.add_argument(
        "--batch-key",
        action="extend",
        type=_column_names,
        metavar="COLUMN",
        help="column of the RNA .obs naming each cell's sample or batch; the decoders learn "
        "per-batch offsets so the embeddings are not driven by sample differences. Repeat it, "
        "or give several separated by commas (--batch-key donor,protocol), to combine columns "
        "into one covariate whose levels are the combinations, written 'a|b'",
    )
    batches.add_argument(
        "--encode-batch",
        action="store_true",
        help="also give the encoders each cell's batch (needs --batch-key)",
    )
    fit.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    _add_training_options(fit, epochs=FitOptions.epochs, atac_weight=FitOptions.atac_weight)
    fit.add_argument(
        "--batch-size",
        type=_positive_int,
        default=FitOptions.batch_size,
        metavar="N",
        help="cells per minibatch (default: %(default)s)",
    )
    fit.add_argument(
        "--latent",
        type=_positive_int,
        default=FitOptions.latent,
        metavar="N",
        help="latent dimensions per modality (default: %(default)s)",
    )
    fit.add_argument("--augment", action="store_true", help=f"also write {AUGMENTED_FILE}")
    fit.add_argument(
        "--augment-threshold",
        type=float,
        metavar="X",
        help="keep augmented values >= X and store them sparse (implies --augment)",
    )
    fit.add_argument(
        "--links-window",
        type=_positive_int,
        default=FitOptions.links_window,
        metavar="BP",
        help="candidate peaks lie within BP of the TSS (default: %(default)s)",
    )
    fit.add_argument(
        "--links-score",
        default=FitOptions.links_score,
        choices=LINK_SCORES,
        help="correlation: of the gene's and the peak's contributions to the decoders over "
        "cells, whatever the rotation between the RNA and ATAC latents; cosine: the paper's "
        "cosine of their embeddings, highest for the prior's pairs (default: %(default)s)",
    )
    fit.add_argument(
        "--no-links", dest="links", action="store_false", help=f"do not write {LINKS_FILE}"
    )
    fit.add_argument(
        "--checkpoint-every",
        type=_non_negative_int,
        default=FitOptions.checkpoint_every,
        metavar="N",
        help="save the training state every N epochs, 0 = never (default: %(default)s)",
    )
    fit.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="train with N data-parallel processes through torchrun (default: %(default)s)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoints (same inputs and settings); without it a run "
        "starts afresh and deletes old checkpoints",
    )

    demo = commands.add_parser(
        "demo",
        help="simulate a data set, fit it as 'fit' does and score the result",
        description="Simulate multiome data with planted cell types and gene-peak links, write\n"
        "it to DIR/input, run 'fit' on it and report clustering ARI/NMI (k-means on the\n"
        "joint embedding) and the links' AUROC against the planted links.",
        epilog=_DEMO_OUTPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("factvae-demo"),
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    demo.add_argument(
        "--cells",
        type=_positive_int,
        default=800,
        metavar="N",
        help="simulated cells (default: %(default)s)",
    )
    _add_training_options(demo, epochs=DEMO_EPOCHS, atac_weight=DEMO_ATAC_WEIGHT)
    return parser


def _add_training_options(
    parser: argparse.ArgumentParser, epochs: int | None, atac_weight: float | None
) -> None:
    parser.add_argument(
        "--max-epochs",
        "--epochs",
        dest="epochs",
        type=_positive_int,
        default=epochs,
        metavar="N",
        help="most training epochs (default: "
        + ("%(default)s" if epochs else "the preset's: fewer as cells grow, 300 for 'paper'")
        + ")",
    )
    parser.add_argument(
        "--preset",
        default=FitOptions.preset,
        choices=sorted(PRESETS),
        help="'default' suits data of any size (validation cells, early stopping, bounded "
        "encoder inputs); 'paper' is the authors' 300-epoch schedule exactly "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop once the validation loss stops improving and keep the best epoch "
        "(default: the preset's, on for 'default')",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        metavar="F",
        help="share of cells held out for validation (default: the preset's, 0.1 for 'default')",
    )
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        metavar="N",
        help="epochs without improvement before stopping (default: a tenth of the epochs)",
    )
    parser.add_argument(
        "--atac-weight",
        type=_positive_float,
        default=atac_weight,
        metavar="W",
        help="weight of the ATAC reconstruction loss (default: %s)"
        % (
            f"the authors' {ATAC_WEIGHT} up to {ATAC_WEIGHT_PEAKS:,} peaks, in proportion above"
            if atac_weight is None
            else "%(default)s"
        ),
    )
    parser.add_argument(
        "--hvg",
        type=_positive_int,
        default=FitOptions.hvg,
        metavar="N",
        help="highly variable genes to model (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=FitOptions.device,
        help="auto, cpu, cuda or mps (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        default=FitOptions.precision,
        choices=PRECISIONS,
        help="bf16 runs the decoders' large products in bf16; auto picks it on CPUs with "
        "native bf16 and float32 elsewhere (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=FitOptions.seed,
        metavar="N",
        help="random seed; the same seed repeats a run on CPU (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar or status lines (the final summary is still printed)",
    )


def run_fit(options: FitOptions) -> FitResult:
    """Read the inputs, train (resuming if asked), write every output; the work of ``fit``."""
    started = time.perf_counter()
    _check_options(options)
    say = _status(options.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 owns the checkpoints
        checkpoint_dir = _prepare_checkpoints(options, say)
    else:
        checkpoint_dir = None if options.checkpoint_every == 0 else options.out / CHECKPOINTS
    say("reading inputs")
    mdata = None
    if options.tenx is not None:
        rna, atac = read_10x_multiome(options.tenx)
    elif options.h5mu is not None:
        mdata = read_h5mu(options.h5mu)
        rna, atac = mudata_modalities(mdata, (options.rna_modality, options.atac_modality))
    else:
        assert options.rna is not None and options.atac is not None  # _check_options made sure
        rna, atac = read_pair(options.rna, options.atac, backed=options.backed)
    say(f"read {rna.n_obs} x {rna.n_vars} RNA and {atac.n_obs} x {atac.n_vars} ATAC")
    g2p = read_g2p(options.g2p, rna.var_names, atac.var_names) if options.g2p else None
    model = FactVAE(
        rna,
        atac,
        gene_annotation=options.annotation,
        g2p=g2p,
        preset=options.preset,
        n_latent=options.latent,
        n_hvg=options.hvg,
        atac_recon_weight=options.atac_weight,
        batch_key=list(options.batch_key) if options.batch_key else None,
        encode_batch=options.encode_batch,
    )
    say(repr(model))

    trained = time.perf_counter()
    try:
        model.fit(
            max_epochs=options.epochs,
            early_stopping=options.early_stopping,
            validation_fraction=options.validation_fraction,
            patience=options.patience,
            batch_size=options.batch_size,
            device=options.device,
            seed=options.seed,
            progress=not options.quiet,
            precision=options.precision,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=max(options.checkpoint_every, 1),
            resume=options.resume,
        )
    except TrainingDivergedError as err:
        if not model.is_trained or current_group().rank != 0:
            raise
        kept = model.save(options.out / MODEL_DIR)
        raise TrainingDivergedError(
            f"{err} That model is saved in {kept}.", err.last_good_epoch
        ) from err
    train_seconds = time.perf_counter() - trained
    if current_group().rank != 0:  # the other ranks hold the same model; one writes it
        return FitResult(model, None, [], train_seconds, time.perf_counter() - started)
    if options.epochs is not None and len(model.history) > options.epochs:
        say(f"the checkpoint was already at epoch {len(model.history)}; nothing left to train")

    say("writing outputs")
    written, links = _write_outputs(model, options, rna, mdata)
    return FitResult(model, links, written, train_seconds, time.perf_counter() - started)


def _check_options(options: FitOptions) -> None:
    """Reject inconsistent options before any data is read or any training time is spent."""
    sources = [options.tenx is not None, options.h5mu is not None]
    sources.append(options.rna is not None or options.atac is not None)
    if sum(sources) != 1 or (sources[2] and (options.rna is None or options.atac is None)):
        raise FactVAEInputError(
            "give the input one way: --rna RNA.h5ad --atac ATAC.h5ad, --10x FOLDER or --h5mu FILE."
        )
    if options.h5mu is not None and not options.h5mu.is_file():
        raise FactVAEInputError(f"--h5mu file {str(options.h5mu)!r} does not exist.")
    if options.backed and options.rna is None:
        raise FactVAEInputError(
            "--backed reads --rna/--atac .h5ad inputs from disk; a 10x folder or an .h5mu is "
            "read into memory. Drop --backed, or write the two modalities to rna.h5ad and "
            "atac.h5ad (X as CSR) and give --rna and --atac."
        )
    if options.annotation is None and options.g2p is None:
        raise FactVAEInputError(
            "FactVAE needs a gene-peak prior: give --annotation (a BED or GTF of gene "
            "coordinates) or --g2p."
        )
    if options.annotation is not None and not options.annotation.is_file():
        raise FactVAEInputError(f"annotation file {str(options.annotation)!r} does not exist.")
    if options.links and options.annotation is None:
        raise FactVAEInputError(
            "gene-peak links need gene coordinates: add --annotation, or pass --no-links."
        )
    if options.augment_threshold is not None and not options.augment_threshold >= 0:
        raise FactVAEInputError("--augment-threshold must be a number >= 0.")
    if options.resume and options.checkpoint_every == 0:
        raise FactVAEInputError("--resume needs checkpoints; drop --checkpoint-every 0.")
    if options.out.exists() and not options.out.is_dir():
        raise FactVAEInputError(f"--out {str(options.out)!r} exists and is not a folder.")


def _prepare_checkpoints(options: FitOptions, say: Callable[[str], None]) -> Path | None:
    """The checkpoint folder to train with: emptied for a fresh run, kept for --resume (``fit``
    refuses a checkpoint made from other inputs or settings)."""
    if options.checkpoint_every == 0:
        return None
    folder = options.out / CHECKPOINTS
    if options.resume and (folder / CHECKPOINT_FILE).is_file():
        say(f"resuming from the checkpoint in {folder}")
        return folder
    if options.resume:
        say(f"no checkpoint in {folder} yet; starting from the first epoch")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _write_outputs(
    model: FactVAE, options: FitOptions, rna: Any, mdata: Any = None
) -> tuple[list[tuple[str, Path, str]], pd.DataFrame | None]:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    written = [("model", model.save(out / MODEL_DIR), f"{len(model.history)} epochs")]

    latent = model.get_latent("joint")
    n = latent.shape[1] // 2
    columns = [f"atac_{i + 1}" for i in range(n)] + [f"rna_{i + 1}" for i in range(n)]
    embeddings = pd.DataFrame(latent, index=pd.Index(model.obs_names, name="cell"), columns=columns)
    path = out / EMBEDDINGS_FILE
    embeddings.to_csv(path, sep="\t", float_format="%.9g")  # %.9g round-trips float32 exactly
    written.append(("embeddings", path, f"{latent.shape[0]} cells x {latent.shape[1]}"))

    links = None
    if options.links:
        links = model.infer_links(  # rna: every detected gene, not only the modelled ones
            window=options.links_window, seed=options.seed, score=options.links_score, rna=rna
        )
        links = links.sort_values("score", ascending=False, kind="stable", ignore_index=True)
        path = out / LINKS_FILE
        links.to_csv(path, sep="\t", index=False, float_format="%.6g")
        significant = int((links["qvalue"] < 0.05).sum())
        written.append(("links", path, f"{len(links)} pairs, {significant} with q < 0.05"))

    matrix = None
    if options.augment or options.augment_threshold is not None:
        matrix = model.augment_atac(threshold=options.augment_threshold)
        assert not isinstance(matrix, Path)  # only out= streams to a path
        augmented = anndata.AnnData(
            X=matrix,
            obs=pd.DataFrame(index=pd.Index(model.obs_names, name=None)),
            var=model.peak_coords.copy(),
        )
        path = out / AUGMENTED_FILE
        augmented.write_h5ad(path)
        kind = f"sparse, {matrix.nnz} values" if isinstance(matrix, sp.csr_matrix) else "dense"
        written.append(("augmented", path, f"{matrix.shape[0]} x {matrix.shape[1]} {kind}"))
    if mdata is not None:
        add_results(mdata, model, links, matrix, options.atac_modality)
        path = out / RESULTS_H5MU
        mdata.write(path)
        written.append(("MuData with results", path, f"{mdata.n_obs} cells"))
    return written, links


def print_summary(result: FitResult) -> None:
    """One line on the training, then one per written output: what, where, how big."""
    model = result.model
    print(
        f"factvae: trained {len(model.history)} epochs on {model.device} in "
        f"{_duration(result.train_seconds)} ({len(model.obs_names)} cells, {len(model.genes)} "
        f"genes, {len(model.peaks)} peaks, {model.g2p.nnz} prior pairs); "
        f"total {_duration(result.total_seconds)}"
    )
    width = max(len(str(path)) for _, path, _ in result.written)
    for label, path, detail in result.written:
        print(f"  {label:<11} {path!s:<{width}}  {detail}")


def run_demo(args: argparse.Namespace) -> None:
    """Simulate, write the inputs, fit through :func:`run_fit` and score against the truth."""
    from factvae.data.simulate import simulate

    out: Path = args.out
    inputs = out / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    sim = simulate(n_cells=args.cells, seed=args.seed)
    bed = inputs / "genes.bed"
    sim.genes.assign(score=0)[["chrom", "start", "end", "gene_name", "score", "strand"]].to_csv(
        bed, sep="\t", header=False, index=False
    )
    sim.rna.write_h5ad(inputs / "rna.h5ad")
    sim.atac.write_h5ad(inputs / "atac.h5ad")
    options = FitOptions(
        out=out,
        rna=inputs / "rna.h5ad",
        atac=inputs / "atac.h5ad",
        annotation=bed,
        epochs=args.epochs,
        preset=args.preset,
        early_stopping=args.early_stopping,
        validation_fraction=args.validation_fraction,
        patience=args.patience,
        hvg=args.hvg,
        atac_weight=args.atac_weight,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        quiet=args.quiet,
    )
    result = run_fit(options)
    print(f"factvae demo: simulated {sim.rna.n_obs} cells, inputs in {inputs}")
    print_summary(result)
    scores = demo_scores(result, sim.rna.obs["cell_type"], sim.links, args.seed)
    print(
        f"  clustering  ARI {scores['ari']:.3f}, NMI {scores['nmi']:.3f} (k-means, k = "
        f"{sim.rna.obs['cell_type'].nunique()}, on the joint embedding)"
    )
    print(f"  links       AUROC {scores['auroc']:.3f} against the {len(sim.links)} planted links")


def demo_scores(
    result: FitResult, cell_types: pd.Series, planted: pd.DataFrame, seed: int
) -> dict[str, float]:
    """ARI/NMI of k-means on the joint embedding, and the links' AUROC against planted pairs."""
    from sklearn.metrics import roc_auc_score

    truth = cell_types.loc[result.model.obs_names]
    scores = clustering_scores(result.model.get_latent("joint"), truth, seed)
    scores["auroc"] = float("nan")
    links = result.links
    if links is not None:
        positive = pd.MultiIndex.from_frame(links[["gene", "peak"]]).isin(
            pd.MultiIndex.from_frame(planted[["gene", "peak"]])
        )
        if 0 < positive.sum() < len(positive):
            scores["auroc"] = float(roc_auc_score(positive, links["score"]))
    return scores


def _status(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(f"factvae: {message}", file=sys.stderr)

    return say


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:.0f}s" if minutes else f"{rest:.1f}s"


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one ``factvae: warning:`` line instead of a file:line dump."""
    print(f"factvae: warning: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _column_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be column names separated by commas, got {text!r}")
    return names


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
