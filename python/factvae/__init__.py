"""FactVAE for single-cell multiome data: cell embeddings, augmented ATAC and gene-peak links."""

__version__ = "0.1.0"

from factvae.api import FactVAE
from factvae.data.prior import GeneToPeak, gene_to_peak
from factvae.data.simulate import SimulatedMultiome, simulate, simulate_preset
from factvae.errors import FactVAEInputError, TrainingDivergedError, TrainingInterrupted

__all__ = [
    "FactVAE",
    "FactVAEInputError",
    "GeneToPeak",
    "SimulatedMultiome",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "__version__",
    "gene_to_peak",
    "simulate",
    "simulate_preset",
]
