"""FactVAE for single-cell multiome data: cell embeddings, augmented ATAC and gene-peak links."""

__version__ = "0.1.0"

from .api import FactVAE
from .errors import FactVAEInputError, TrainingDivergedError
from .prior import GeneToPeak, gene_to_peak
from .simulate import SimulatedMultiome, simulate, simulate_preset

__all__ = [
    "FactVAE",
    "FactVAEInputError",
    "GeneToPeak",
    "SimulatedMultiome",
    "TrainingDivergedError",
    "__version__",
    "gene_to_peak",
    "simulate",
    "simulate_preset",
]
