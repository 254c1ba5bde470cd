"""On a CUDA GPU: sliding-window inference, `Segmenter` and `medseg infer --device cuda`, and `medseg train`
under torchrun with NCCL. Each GPU result is compared with the same computation on the CPU.

CI has no GPU, so these skip there; on a GPU machine run them with ``pytest -m gpu``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from infer_models import save_threshold_checkpoint
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main
from medseg.inference.ensemble import load_ensemble
from medseg.inference.segmenter import Segmenter
from medseg.inference.sliding_window import WindowSettings, segment
from medseg.io.image import ScalarImage
from medseg.models import create_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.usefixtures("exact_float32"),
]


def test_gpu_sliding_window_gives_the_cpu_labels():
    torch.manual_seed(0)
    network = create_model("unet", 3, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).eval()
    volume = torch.randn(1, 70, 58, 41, generator=torch.Generator().manual_seed(1))
    exact = {"precision": "fp32", "accumulate": "fp32"}
    on_cpu = segment([network], volume, WindowSettings((32, 32, 16), **exact))
    on_gpu = segment([network.cuda()], volume, WindowSettings((32, 32, 16), device="cuda", **exact))
    assert on_gpu.device.type == "cpu" and on_gpu.shape == volume.shape[1:]
    assert (on_gpu == on_cpu).float().mean() > 0.999
    fast = segment([network], volume, WindowSettings((32, 32, 16), device="cuda"))  # auto: half precision
    assert (fast == on_cpu).float().mean() > 0.98


def test_infer_on_the_gpu_writes_the_cpu_mask_for_a_real_ct_series(datasets_dir, tmp_path):
    folder = datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom"
    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [3.0, 3.0, 3.0], [32, 32, 16])
    masks = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        args = ["infer", str(folder), "--model", str(model), "--out", str(out), "--device", device]
        assert main([*args, "--precision", "fp32"]) == 0
        [result] = out.glob("*/result.json")
        masks[device] = nib.load(result.parent / "mask.nii.gz")
    np.testing.assert_array_equal(masks["cuda"].affine, masks["cpu"].affine)
    cpu, gpu = (np.asarray(m.dataobj) for m in (masks["cpu"], masks["cuda"]))
    assert cpu.any() and (gpu == cpu).mean() > 0.9999


def test_torchrun_trains_on_every_gpu_over_nccl(datasets_dir, tmp_path):
    """`torchrun --nproc_per_node <GPUs> -m medseg.cli.main train`: a process per GPU, one checkpoint."""
    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=4, val=1)
    config = tiny_config(manifest, tmp_path / "run", device="cuda", epochs=2, steps_per_epoch=3)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    gpus = torch.cuda.device_count()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    command += ["-m", "medseg.cli.main", "train", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["training"]["step"] == 6
    floats = [t for t in checkpoint["state_dict"].values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in floats)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["best.pt", "last.pt"]


def test_a_segmenter_loaded_for_cuda_runs_its_windows_there(tmp_path):
    """`Segmenter.load(..., device="cuda")` needs no further settings: networks and windows on the GPU."""
    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [1.0, 1.0, 2.5], [16, 16, 8])
    segmenter = Segmenter.load(model, "cuda", precision="fp32")
    assert segmenter.device == "cuda:0" and segmenter.settings.device == "cuda:0"
    assert all(p.is_cuda for network in segmenter.ensemble.networks for p in network.parameters())
    assert load_ensemble(model, "cuda:0").settings().device == "cuda:0"
    image = ScalarImage(
        np.random.default_rng(0).integers(-500, 600, (40, 36, 20)).astype(np.float32), np.eye(4)
    )
    on_gpu = segmenter.predict(image).array
    on_cpu = Segmenter.load(model, "cpu", precision="fp32").predict(image).array
    assert on_gpu.any() and (on_gpu == on_cpu).mean() > 0.9999
