"""The ``factvae`` command: train on files, write embeddings/links/model, or run a demo.

One module per command (:mod:`factvae.cli.fit`, :mod:`factvae.cli.demo`); this one assembles
the parser and runs a command. ``fit`` and ``demo`` share :func:`run_fit`, so the demo exercises
exactly what users run. Input problems end with ``factvae: error: ...`` and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factvae import __version__
from factvae.cli.demo import (
    DEMO_ATAC_WEIGHT,
    DEMO_EPOCHS,
    add_demo_parser,
    demo_scores,
    run_demo,
)
from factvae.cli.fit import add_fit_parser, run_fit
from factvae.cli.options import FitOptions
from factvae.cli.outputs import (
    AUGMENTED_FILE,
    CHECKPOINTS,
    EMBEDDINGS_FILE,
    LINKS_FILE,
    MODEL_DIR,
    RESULTS_H5MU,
    FitResult,
    print_summary,
)
from factvae.errors import FactVAEInputError, TrainingDivergedError

__all__ = [
    "AUGMENTED_FILE",
    "CHECKPOINTS",
    "DEMO_ATAC_WEIGHT",
    "DEMO_EPOCHS",
    "EMBEDDINGS_FILE",
    "EXIT_ERROR",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "LINKS_FILE",
    "MODEL_DIR",
    "RESULTS_H5MU",
    "FitOptions",
    "FitResult",
    "build_parser",
    "demo_scores",
    "main",
    "print_summary",
    "run_demo",
    "run_fit",
]

EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130


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

    add_fit_parser(commands)
    add_demo_parser(commands)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one ``factvae: warning:`` line instead of a file:line dump."""
    print(f"factvae: warning: {message}", file=sys.stderr)
