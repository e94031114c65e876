"""landscape: the geometry of neural-network landscapes.

Slices of loss surfaces and of units' input-response surfaces, their
quasi-convexity, Hessian spectra, and the reliability of max-activating
examples, for random and trained networks.  Every analysis returns an
``xarray.Dataset``; :func:`save` / :func:`load` keep them as netCDF.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it; imported on first use so that
# ``import landscape`` stays cheap and the command line starts quickly.
_API = {
    "build_model": "models",
    "load_checkpoint": "models",
    "unit_activations": "models",
    "initialize": "init",
    "load_dataset": "data",
    "parameter_directions": "directions",
    "input_directions": "directions",
    "filter_normalize": "directions",
    "loss_slice": "slicing",
    "input_slice": "slicing",
    "parse_grid": "slicing",
    "quasi_convexity": "convexity",
    "qcvx_barrier": "convexity",
    "qccv_barrier": "convexity",
    "hessian_spectrum": "hessian",
    "input_hessian_spectrum": "hessian",
    "top_eigenvectors": "hessian",
    "maxact": "maxact",
    "relate": "maxact",
    "compare_states": "maxact",
    "tsne_heatmaps": "embedding",
    "make_variant": "models.variants",
    "parse_variants": "models.variants",
    "train_sae": "sae",
    "sae_study": "sae",
    "model_view": "view",
    "sae_metrics": "sae",
    "save": "results",
    "load": "results",
    "LandscapeError": "errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")


def __dir__():
    return __all__
