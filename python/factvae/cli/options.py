"""The options of a fit, shared by ``factvae fit`` and ``factvae demo``: ``FitOptions``,
the training flags both commands take, and argument types whose errors name the flag."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

from factvae.io.mudata import MODALITIES as MUDATA_MODALITIES
from factvae.settings import ATAC_WEIGHT, ATAC_WEIGHT_PEAKS, MODEL_DEFAULTS, PRESETS, RUN_DEFAULTS
from factvae.train.devices import PRECISIONS


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
    augment_latent: str = RUN_DEFAULTS.augment_latent
    links: bool = True
    links_window: int = RUN_DEFAULTS.link_window
    links_score: str = RUN_DEFAULTS.link_score
    checkpoint_every: int = RUN_DEFAULTS.checkpoint_every
    resume: bool = False
    quiet: bool = False
    backed: bool = False
    batch_key: list[str] | None = None
    encode_batch: bool = MODEL_DEFAULTS.encode_batch
    batch_mmd_weight: float = MODEL_DEFAULTS.batch_mmd_weight

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FitOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def add_training_options(
    parser: argparse.ArgumentParser, epochs: int | None, atac_weight: float | None
) -> None:
    parser.add_argument(
        "--max-epochs",
        "--epochs",
        dest="epochs",
        type=positive_int,
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
        help="stop once neither modality's validation loss improves and keep the last "
        "epoch at which one did "
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
        type=positive_int,
        default=None,
        metavar="N",
        help="epochs without improvement before stopping (default: a tenth of the epochs)",
    )
    parser.add_argument(
        "--atac-weight",
        type=positive_float,
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
        type=positive_int,
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


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def column_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be column names separated by commas, got {text!r}")
    return names


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
