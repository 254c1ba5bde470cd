"""Every registered model on a CUDA GPU: the CPU's output in fp32, and a training step under bf16 autocast.

CI has no GPU, so these skip there; on a GPU machine run them with ``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

from medseg.models import create_model, deep_supervision_outputs, get_spec, list_models

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.usefixtures("exact_float32"),
]

#: Odd sizes, as in test_model_contract.py, so the padding and cropping paths run on the GPU too.
SHAPES = {2: (37, 45), 3: (19, 21, 13)}
CASES = [(name, dims) for name in list_models() for dims in get_spec(name).dims]


@pytest.mark.parametrize(("name", "spatial_dims"), CASES)
def test_every_model_gives_its_cpu_output_on_the_gpu_and_trains_under_bf16_autocast(name, spatial_dims, tiny):
    torch.manual_seed(0)
    shape = SHAPES[spatial_dims]
    model = create_model(name, spatial_dims, 1, 3, **tiny(name, spatial_dims, shape)).eval()
    x = torch.randn(2, 1, *shape)
    with torch.no_grad():
        on_cpu = model(x)
        on_gpu = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3 * float(on_cpu.abs().max()))

    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outputs = deep_supervision_outputs(model(x.cuda()))
        loss = sum((o.float() * torch.randn_like(o, dtype=torch.float32)).sum() for o in outputs)
    loss.backward()
    assert all(tuple(o.shape) == (2, 3, *shape) for o in outputs)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.is_cuda and torch.isfinite(g).all() for g in grads)
