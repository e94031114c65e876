"""Max-activating examples, gradient-ascent maxima, and how reliable the former
are as a portrait of a unit.

The claim under test: a dataset's max-activating examples describe a unit only
if the unit's response has few, well-separated maxima near the data.  When the
response is smooth and quasi-convex, the data lying densely near the maximum all
activate strongly — a consequence of data density and Lipschitz continuity, not
evidence of a learned feature — which is why random networks look
"interpretable" (cf. Olah et al., *Feature Visualization*, Distill 2017; Borowski
et al., *Exemplary natural images explain CNN activations better than
state-of-the-art feature visualization*, ICLR 2021).

Everything below works on any callable ``f: (N, D) tensor -> (N, U)`` (a unit's
activation ``a_u(x)`` is column ``u``), so synthetic units (a Gaussian bump, a
linear function) are measured by the same code as a network's units:
:func:`reliability_metrics`.  :func:`maxact` wraps a model's layer into such a
callable (:func:`landscape.models.unit_activations`, eval mode, the model
untouched).

Notation.  Data ``x_1..x_N ∈ R^D`` (inputs flattened), unit activations
``a_i = a_u(x_i)``, the data's value box ``B = Π_d [min_i x_id, max_i x_id]``,
``h`` = the median over i of the distance from ``x_i`` to its nearest other
datum, ``m_u`` = the median of ``a_u`` over the data, ``x*`` = the dataset argmax.

**Where the maxima are sought** (``region``; :mod:`landscape.maxact.search` has
the sets, the ascent and its convergence).  ``data`` (the default): convex
combinations of a start's ``k`` nearest data (``region_k``, default 16); ``ball``:
``‖z − x̄‖ ≤ r``, ``r`` by default ``max_i ‖x_i − x̄‖``; ``box``: ``B``.  Starts per
unit: ``R`` random restarts drawn from ``N(x̄, diag σ²)`` (the data's per-feature
mean and std) clamped to ``B`` (and projected onto the ball; in the data region a
random start is replaced by the centroid of its neighbours), and the unit's ``k``
top examples (a top example starts at itself: it lies in every region).  Each
start ascends by projected Adam, all units × starts in one batch.

*Why ``data`` is the default.*  The question a user brings to max-activating
examples is "what in the data's world drives this unit most".  Over a box or a
ball a piecewise-linear unit (any ReLU network) peaks on the boundary, at a point
as far from the data as the set allows, so "the maximum lies off the data" and a
low ``rho`` would follow from the set, not from the unit.  Blends of neighbouring
examples stay where the data live, yet still let the maximum fall between
examples, so ``rho < 1`` says the data's top example is beaten by something
data-like.  ``box`` and ``ball`` remain for the question "what input drives this
unit most" (feature visualisation).

The **best maximum** ``z_u^best`` is the ascent endpoint with the highest
activation ``a_u^best`` (or ``x*`` if no endpoint beats it), and
``s_u = a_u^best − m_u`` is the *climb*, the scale of the unit's maxima.

Metrics per unit (the variables of a ``maxact`` result).  Every one is defined in
every region, with distances always measured in input space (so the endpoints of
different regions compare directly); only their reading changes, noted per metric:

``rho``               ``(a_u(x*) − m_u) / s_u``: the share of the climb from the
                      median datum to the best maximum that the dataset's top
                      example achieves (1: the data's top example is the maximum;
                      in the data region, no blend of neighbours beats it).
``gain``              ``(a_u(z_{x*}) − a_u(x*)) / std_i a_i``: what ascending from
                      ``x*`` adds, in units of the activation's std over the data.
``displacement``      ``‖z_{x*} − x*‖ / h``: how far that ascent moves (data:
                      at most the distance from ``x*`` to its k-th neighbour).
``n_maxima``          the number of distinct maxima within ε of the best: endpoints
                      with ``a ≥ a^best − ε s_u`` (ε = ``eps``, default 0.05) are
                      clustered by single linkage with merge distance ``δ =
                      merge_radius · h`` (default 0.5 h); clusters are counted.
``p_hit``             the share of the ``R`` random restarts whose endpoint reaches
                      the best: lies in the same cluster as ``z^best`` (so within ε
                      of its height and joined to it by steps shorter than δ).
                      In the data region a restart explores only its own
                      neighbourhood, so ``p_hit`` is the share of random
                      neighbourhoods that hold the best maximum and ``n_maxima``
                      counts local maxima of distinct neighbourhoods: both read
                      "how local is the peak", not "how easy to find".
``dist_to_data``      ``min_i ‖z^best − x_i‖ / h`` (data: 0 when the best maximum
                      is a datum, below the distance to its nearest vertex always).
``topk_compactness``  mean pairwise distance of the top-k examples over the mean
                      pairwise distance of all data pairs (the expected value for a
                      random k-subset; estimated on ≤ 2048 data points).  < 1: the
                      top examples cluster.
``topk_jaccard``      the data split at random into disjoint halves A, B (seeded);
                      ``T_A, T_B`` each half's top-k; ``N(T)`` = T with each
                      member's kNN in the whole data; the Jaccard index
                      ``|N(T_A) ∩ N(T_B)| / |N(T_A) ∪ N(T_B)|``.  1: both halves
                      point at the same region of input space.
``lipschitz``         the 99th percentile of ``|a_i − a_j| / ‖x_i − x_j‖`` over the
                      directed kNN edges (k = ``k_neighbors``, default 10).
``morans_i``          Moran's I of ``a`` on the symmetrised kNN graph ``W``
                      (``w_ij = 1`` if j ∈ kNN(i) or i ∈ kNN(j)):
                      ``I = (N / Σ w_ij) · Σ_ij w_ij (a_i − ā)(a_j − ā) / Σ_i (a_i − ā)²``;
                      ≈ 1 for a response smooth on the data's scale, ≈ 0 for noise.

Null: fresh draws of the same architecture from the model's own recipe (init,
weight std, bias scale, every model option; a checkpoint's from its meta), each
from another seed (:func:`null_model`), give each metric's null distribution,
pooled over their units; ``<metric>_z = (metric − mean_null) / std_null``.

:func:`relate` sets the metrics beside the input-slice quasi-convexity and the
input-Hessian statistics of the same units, with Spearman rank correlations;
:func:`compare_states` correlates a random and a trained network's metrics.
"""

from .analysis import layer_function, maxact, null_model
from .metrics import (
    DESCRIPTIONS,
    GEOMETRY,
    METRICS,
    lipschitz_knn,
    morans_i,
    reliability_metrics,
)
from .relation import compare_states, geometry_of, relate
from .search import REGIONS, Region, ascend, gradient_ascent, project, search_region

__all__ = ["DESCRIPTIONS", "GEOMETRY", "METRICS", "REGIONS", "Region", "ascend", "compare_states",
           "geometry_of", "gradient_ascent", "layer_function", "lipschitz_knn", "maxact",
           "morans_i", "null_model", "project", "relate", "reliability_metrics", "search_region"]
