"""FactVAE for single-cell multiome data: cell embeddings, augmented ATAC and gene-peak links."""

__version__ = "0.1.0"

from .api import FactVAE  # noqa: E402
from .errors import FactVAEInputError, TrainingDivergedError  # noqa: E402
from .prior import GeneToPeak, gene_to_peak  # noqa: E402
from .simulate import SimulatedMultiome, simulate  # noqa: E402

__all__ = [
    "FactVAE",
    "FactVAEInputError",
    "GeneToPeak",
    "SimulatedMultiome",
    "TrainingDivergedError",
    "__version__",
    "gene_to_peak",
    "simulate",
]
