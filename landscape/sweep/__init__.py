"""Ablation sweeps on Dask: one task per point of a Cartesian product, one file
per task, one combined Dataset at the end.

A sweep runs one analysis of :data:`landscape.commands.registry.ANALYSES` (``slice``,
``hessian``, ``maxact``, ``tsne``) at every point of

    model × init × bias_scale × seed × state        (state: random / trained)

Each task is the analysis's own options dict, filled in by the same click
parameters the command ``landscape ANALYSIS ...`` parses, so a task is exactly
what that command would run.  Tasks write their own netCDF file atomically
(``DIR/ANALYSIS/MODEL_INIT_bS_sSEED_STATE.nc``, the coordinates also in the
file's attrs); running the sweep again skips every task whose file exists,
loads and was made with the same options, so a crash or a kill loses nothing
finished.  A failing task is recorded with its error and does not stop the
others.  :func:`combine` then stacks the parts along the sweep dimensions into
one Dataset of kind ``sweep``; per-part headline numbers kept in attrs
(``loss_frac_quasi_convex``, ...) become data variables over those dimensions.

A local cluster is laid out by :func:`plan_workers`: one worker per visible GPU,
pinned with ``CUDA_VISIBLE_DEVICES``, when the tasks run on CUDA, else one per
core this process may use; each worker starts with its share of the memory
budget (``LANDSCAPE_MAX_MEMORY``), and each task sets torch's threads to the
cores per worker and records them in its result's ``threads`` attribute.

A sweep's tasks are planned in :mod:`.plan`, run in :mod:`.run` on a cluster
from :mod:`.cluster`, and combined in :mod:`.combine` (headline numbers and tables:
:mod:`landscape.summary`); :mod:`.shard` spreads the
grid points of one slice over the same kind of cluster.
"""

from ..summary import SWEEP_DIMS
from .cluster import QUIET_SCHEDULER, WorkerPlan, local_plan, plan_workers, quiet_dask, start_client
from .combine import VOLATILE_ATTRS, combine, failures_of
from .plan import (
    FINGERPRINT_HEAD,
    RESERVED,
    STATES,
    Task,
    check_pass_through,
    expand_tasks,
    file_fingerprint,
    parse_list,
    parse_seeds,
    task_name,
)
from .run import SweepOutcome, _is_done, run_task, run_tasks

__all__ = ["FINGERPRINT_HEAD", "QUIET_SCHEDULER", "RESERVED", "STATES", "SWEEP_DIMS",
           "VOLATILE_ATTRS", "SweepOutcome", "Task", "WorkerPlan", "_is_done",
           "check_pass_through", "combine", "expand_tasks", "failures_of", "file_fingerprint",
           "local_plan", "parse_list", "parse_seeds", "plan_workers", "quiet_dask", "run_task",
           "run_tasks", "start_client", "task_name"]
