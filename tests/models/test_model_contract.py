"""Every registered model, in 2D and 3D, on odd input sizes: shapes, output contract, gradients,
determinism and graph export."""

from __future__ import annotations

import pytest
import torch

from medseg.models import create_model, deep_supervision_outputs, get_spec, list_models

#: Odd sizes that no model's divisor divides; batch 2 so batch norm has two values at a 1-voxel bottleneck.
SHAPES = {2: (37, 45), 3: (19, 21, 13)}
BATCH = 2
OUT_CHANNELS = 3
#: Outputs in training mode with the tiny options of conftest.py (main + auxiliary heads).
TRAINING_OUTPUTS = {"unetpp": 4, "dynunet": 2, "deeplabv3": 2, "pspnet": 2}
#: Models torch.export cannot capture, with the reason. Every model exports today; keep this in step with
#: docs/models.md if one stops.
EXPORT_EXCEPTIONS: dict[str, str] = {}
#: Export is checked in 2D for every model, and in 3D for the native families (medseg's own 3D code
#: paths); MONAI's 3D networks differ from their 2D build only by the layer classes.
NATIVE_FAMILIES = {"FCN", "DeepLab", "PSPNet"}

CASES = [(name, dims) for name in list_models() for dims in get_spec(name).dims]
EXPORT_CASES = [(n, d) for n, d in CASES if d == 2 or get_spec(n).family in NATIVE_FAMILIES]


def build(name: str, spatial_dims: int, tiny) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    shape = SHAPES[spatial_dims]
    model = create_model(name, spatial_dims, 1, OUT_CHANNELS, **tiny(name, spatial_dims, shape))
    return model, torch.randn(BATCH, 1, *shape)


@pytest.mark.parametrize(("name", "spatial_dims"), CASES)
def test_training_outputs_have_the_input_shape_and_gradients_reach_every_parameter(name, spatial_dims, tiny):
    model, x = build(name, spatial_dims, tiny)
    outputs = deep_supervision_outputs(model.train()(x))
    assert len(outputs) == TRAINING_OUTPUTS.get(name, 1)
    assert all(tuple(o.shape) == (BATCH, OUT_CHANNELS, *x.shape[2:]) for o in outputs)
    # Random weights per voxel: a plain sum has zero gradient through a softmax-like symmetry.
    loss = sum((o * torch.randn_like(o)).sum() for o in outputs)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    silent = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()]
    assert not silent, f"gradient is exactly zero for {silent}"


@pytest.mark.parametrize(("name", "spatial_dims"), CASES)
def test_eval_mode_gives_one_deterministic_tensor_of_the_input_shape(name, spatial_dims, tiny):
    model, x = build(name, spatial_dims, tiny)
    model.train()(x)  # update batch-norm statistics so eval mode uses non-trivial ones
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert isinstance(first, torch.Tensor)
    assert tuple(first.shape) == (BATCH, OUT_CHANNELS, *x.shape[2:])
    assert torch.equal(first, second)


# MONAI's DynUNet stores its deep-supervision head outputs as module attributes during forward.
@pytest.mark.filterwarnings("ignore:The tensor attributes .*heads.* were assigned during export")
@pytest.mark.parametrize(("name", "spatial_dims"), EXPORT_CASES)
def test_torch_export_reproduces_eval_outputs(name, spatial_dims, tiny):
    if name in EXPORT_EXCEPTIONS:
        pytest.skip(EXPORT_EXCEPTIONS[name])
    model, x = build(name, spatial_dims, tiny)
    model.eval()
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-4, atol=1e-5)
