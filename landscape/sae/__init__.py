"""Sparse autoencoders on a network's activations, and how good and how
interpretable their latents are (Heap et al. 2025, *Sparse Autoencoders Can
Interpret Randomly Initialized Transformers*, arXiv 2501.17727).

:mod:`.topk` holds the TopK autoencoder and its trainer (Gao et al. 2024);
:mod:`.metrics` the quality and interpretability metrics;
:mod:`.analysis` caches a model's activations and measures one SAE;
:mod:`.study` trains and measures one per variant of a model and layer.
"""

from .analysis import layer_vectors, sae_metrics, splice
from .metrics import auroc, fvu, loss_recovered
from .study import MIN_STEPS, default_epochs, sae_study, variant_model
from .topk import TopKSAE, default_lr, sae_state, train_sae

__all__ = ["MIN_STEPS", "TopKSAE", "auroc", "default_epochs", "default_lr", "fvu", "layer_vectors",
           "loss_recovered", "sae_metrics", "sae_state", "sae_study", "splice", "train_sae",
           "variant_model"]
