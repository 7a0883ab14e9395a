"""No deprecation notice reaches a user: not from a fit (torch's inductor, imported by
``torch.compile``, used to print ``torch.jit.script_method is deprecated`` 14 times), and not
through the R bridge, whose warning capture used to show libraries' notices that Python hides."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from factvae import r_bridge

FIT = """
import warnings
warnings.simplefilter("error", DeprecationWarning)
warnings.simplefilter("error", PendingDeprecationWarning)
import factvae
from factvae.model import fused

sim = factvae.simulate(n_cells=120, n_genes=120, n_peaks=600, seed=1)
model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, n_hvg=60,
                        n_components=8, n_latent=4)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # features without counts in the small data
    model.fit(max_epochs=2, batch_size=32, progress=False, seed=0)
kernels = (fused._ZERO_CASE, fused._LOGIT_GRADIENTS, fused._NONZERO_TERMS)
assert all(k.compiled is not None and not k.failed for k in kernels), "fell back to eager"
model.get_latent("joint"); model.augment_atac(threshold=0.05); model.infer_links()
print("no deprecation warning")
"""


def test_a_fit_raises_no_deprecation_warning():
    """In a fresh interpreter (torch's modules are imported once per process), with deprecation
    warnings turned into errors: the fit, with its compiled kernels, and the outputs run."""
    env = {k: v for k, v in os.environ.items() if k != "FACTVAE_COMPILE"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", FIT],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "no deprecation warning" in done.stdout
    assert "Deprecat" not in done.stderr, done.stderr


def test_r_bridge_passes_other_warnings_through_python_filters():
    """The bridge returns factvae's warnings to R and leaves the rest to Python's filters: under
    Python's defaults a library's DeprecationWarning stays hidden, a RuntimeWarning is shown."""
    library = "/site-packages/somelib/core.py"
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()  # Python's defaults, not pytest's
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        r_bridge.start_warning_capture()
        warnings.warn_explicit("old API", DeprecationWarning, library, 7)
        warnings.warn_explicit("overflow", RuntimeWarning, library, 9)
        warnings.warn("3 rna features have no counts", UserWarning, stacklevel=1)
        ours = r_bridge.stop_warning_capture()
    assert ours == ["3 rna features have no counts"]
    assert [(w.category, str(w.message)) for w in shown] == [(RuntimeWarning, "overflow")]
