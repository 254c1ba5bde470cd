"""Model zoo: `create_model(name, spatial_dims, in_channels, out_channels, **options)` builds any of them.

``list_models()`` names them; ``medseg models`` prints each with its 2D/3D support, default options and
parameter count. Models accept any input size (`PadToDivisor`) and follow one output contract:

* eval mode: one logits tensor ``(batch, out_channels, *input_spatial_shape)``;
* training mode: the same tensor, or, for models with auxiliary / deep-supervision heads, a tuple
  ``(main, aux1, ...)`` of tensors of that same shape. `deep_supervision_outputs` turns either into a
  list, main first. Details in `medseg.models.outputs` and docs/models.md.
"""

from medseg.models import deeplab, fcn, pspnet, resunet, unet_family  # noqa: F401  (registers the models)
from medseg.models.outputs import auxiliary_weights, deep_supervision_outputs
from medseg.models.padding import PadToDivisor
from medseg.models.registry import (
    ModelSpec,
    count_parameters,
    create_model,
    default_parameter_count,
    get_spec,
    list_models,
)

__all__ = [
    "ModelSpec",
    "PadToDivisor",
    "auxiliary_weights",
    "count_parameters",
    "create_model",
    "deep_supervision_outputs",
    "default_parameter_count",
    "get_spec",
    "list_models",
]
