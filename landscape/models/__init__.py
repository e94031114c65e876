"""Models: the registry of families, your own networks, checkpoints and units.

=========================  ==================================================
:mod:`.registry`           :data:`MODELS`, :func:`register`, :func:`build_model`
:mod:`.zoo`                resnet18, resnet18-noskip, mlp, cnn, autoencoder
:mod:`.transformer`        the byte-level decoder
:mod:`.minilm`             the pretrained all-MiniLM-L6-v2 encoder
:mod:`.user`               ``PATH.py:FUNCTION`` factories
:mod:`.checkpoints`        state dicts and the meta of how they were drawn
:mod:`.units`              layers, units, the default layer
:mod:`.variants`           trained / init / rerandomised / control copies
=========================  ==================================================

A new family is one file that calls :func:`register`, and its import below.
"""

from . import minilm, transformer, zoo  # noqa: F401  (each registers its models)
from .checkpoints import INIT_KEYS, adopt_meta, load_checkpoint, read_checkpoint
from .registry import MODELS, Family, build_model, register
from .units import (
    eval_mode,
    inferred_layer,
    input_view,
    layer_output,
    n_units,
    parse_shape,
    resolve_layer,
    select_units,
    unit_activations,
    units_of,
)
from .user import is_model_spec, load_factory, parse_model_args, user_model
from .zoo import ACTIVATIONS

__all__ = ["ACTIVATIONS", "INIT_KEYS", "MODELS", "Family", "adopt_meta", "build_model", "eval_mode",
           "inferred_layer", "input_view", "is_model_spec", "layer_output", "load_checkpoint",
           "load_factory", "n_units", "parse_model_args", "parse_shape", "read_checkpoint",
           "register", "resolve_layer", "select_units", "unit_activations", "units_of",
           "user_model"]
