"""``factvae fit``: its arguments, and ``run_fit``, which reads the inputs, trains (resuming if
asked) and writes every output; ``factvae demo`` runs it too, so the demo exercises exactly
what users run."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from factvae.api import FactVAE
from factvae.cli.options import (
    FitOptions,
    add_training_options,
    column_names,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from factvae.cli.outputs import (
    AUGMENTED_FILE,
    CHECKPOINTS,
    FIT_OUTPUTS,
    LINKS_FILE,
    MODEL_DIR,
    RESULTS_H5MU,
    FitResult,
    write_outputs,
)
from factvae.data.readers import read_10x_multiome, read_g2p, read_pair
from factvae.errors import FactVAEInputError, TrainingDivergedError
from factvae.io.mudata import MODALITIES as MUDATA_MODALITIES
from factvae.io.mudata import modalities as mudata_modalities
from factvae.io.mudata import read_h5mu
from factvae.outputs.augment import AUGMENT_LATENTS
from factvae.outputs.links import LINK_SCORES
from factvae.train.checkpoints import CHECKPOINT_FILE
from factvae.train.distributed import current_group


def add_fit_parser(commands: argparse._SubParsersAction) -> None:
    """The ``fit`` subcommand and its arguments."""
    fit = commands.add_parser(
        "fit",
        help="train on your data and write embeddings, links and the model",
        description="Train FactVAE on paired RNA + ATAC counts and write its outputs.",
        epilog=FIT_OUTPUTS,
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
        type=column_names,
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
    batches.add_argument(
        "--batch-mmd-weight",
        type=non_negative_float,
        default=FitOptions.batch_mmd_weight,
        metavar="W",
        help="weight of the term that asks each half's latent to mix the batches (squared "
        "MMD between each batch and all cells; with --batch-key); 0 turns it off "
        "(default: %(default)s)",
    )
    fit.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add_training_options(fit, epochs=FitOptions.epochs, atac_weight=FitOptions.atac_weight)
    fit.add_argument(
        "--batch-size",
        type=positive_int,
        default=FitOptions.batch_size,
        metavar="N",
        help="cells per minibatch (default: %(default)s)",
    )
    fit.add_argument(
        "--latent",
        type=positive_int,
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
        "--augment-latent",
        default=FitOptions.augment_latent,
        choices=AUGMENT_LATENTS,
        help="joint: decode the ATAC latent each cell's joint embedding points to, so the RNA "
        "half informs it; atac: the ATAC half's posterior means alone, Eq. 12 as the paper "
        "states it (default: %(default)s)",
    )
    fit.add_argument(
        "--links-window",
        type=positive_int,
        default=FitOptions.links_window,
        metavar="BP",
        help="candidate peaks lie within BP of the TSS (default: %(default)s)",
    )
    fit.add_argument(
        "--links-score",
        default=FitOptions.links_score,
        choices=LINK_SCORES,
        help="combined: the posterior of a two-group model fitted to the candidates outside "
        "the model's prior, whose "
        "prior is the ABC-style power-law contact with the TSS, times its share of the "
        "peak's contact with all annotated TSSs near it, and whose evidence is the "
        "co-variation's z-score against other chromosomes; abc: peak activity x contact as "
        "a share of the gene's candidates (ABC without Hi-C); correlation: "
        "of the gene's and the peak's contributions to the decoders over cells (the "
        "co-variation); cosine: the paper's cosine of their embeddings, highest for the "
        "prior's pairs (default: %(default)s)",
    )
    fit.add_argument(
        "--no-links", dest="links", action="store_false", help=f"do not write {LINKS_FILE}"
    )
    fit.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=FitOptions.checkpoint_every,
        metavar="N",
        help="save the training state every N epochs, 0 = never (default: %(default)s)",
    )
    fit.add_argument(
        "--nproc",
        type=positive_int,
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
        batch_mmd_weight=options.batch_mmd_weight,
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
    written, links = write_outputs(model, options, rna, mdata)
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


def _status(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(f"factvae: {message}", file=sys.stderr)

    return say
