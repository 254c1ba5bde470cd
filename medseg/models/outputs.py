"""The output contract between models and the code that trains or runs them.

* **Eval mode** (``model.eval()``): every model returns one logits tensor of shape
  ``(batch, out_channels, *input_spatial_shape)``. Inference code never sees anything else.
* **Training mode**: a model without auxiliary heads returns the same plain tensor. A model with
  auxiliary / deep-supervision heads (``dynunet`` with ``deep_supervision=True``, ``unetpp`` with
  ``deep_supervision=True``, ``pspnet`` and ``deeplabv3``/``deeplabv3plus``/``fcn*`` with ``aux_head=True``)
  returns a **tuple** ``(main, aux1, aux2, ...)``: main logits first, then the auxiliary logits from
  the finest to the coarsest head. Every element has the main output's shape (full input resolution,
  ``out_channels`` channels), so one loss function applies to each.

Training code should not branch on the type: `deep_supervision_outputs` turns either form into a list,
main first, and the loss is ``sum(w_i * loss(o_i, target))`` with e.g. ``w_0 = 1`` and smaller weights for
the auxiliary heads (`auxiliary_weights` gives nnU-Net's halving scheme).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def deep_supervision_outputs(output: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The model output as a list of logits tensors, main first (one tensor gives ``[output]``)."""
    if isinstance(output, torch.Tensor):
        return [output]
    outputs = list(output)
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise TypeError(f"expected a tensor or a non-empty sequence of tensors, got {type(output).__name__}")
    main_shape = outputs[0].shape
    for index, aux in enumerate(outputs[1:], start=1):
        if aux.shape != main_shape:
            raise ValueError(
                f"auxiliary output {index} has shape {tuple(aux.shape)}, main {tuple(main_shape)}"
            )
    return outputs


def auxiliary_weights(count: int) -> list[float]:
    """Loss weights for `count` outputs: 1 for the main one, then halving (nnU-Net), normalised to sum 1."""
    raw = [0.5**index for index in range(count)]
    return [w / sum(raw) for w in raw]
