"""On a CUDA device: the layer matches its CPU self, compiles, follows autocast, and a
proxy run resumed on another GPU continues the run it left. Skipped without CUDA;
``benchmarks/device_check.sh`` runs them on a GPU machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from einspace.nn import EinsumLinear
from einspace.nn.execute import prefers_dense
from search.proxy import CurvePoint, proxy_run
from search.store import RunStore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [
    ("monarch", 64, 5),
    ("btt:r=0.25", 64, 7),
    ("btt:r=0.25", 64, 4096),
    ("monarch", 1024, 300),
]


def _pair(structure: str, d: int) -> tuple[EinsumLinear, EinsumLinear]:
    torch.manual_seed(0)
    cpu = EinsumLinear(d, d, structure, bias=True)
    with torch.no_grad():
        for p in cpu.parameters():
            p.normal_()
    gpu = EinsumLinear(d, d, structure, bias=True, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


@pytest.mark.parametrize(("structure", "d", "rows"), CASES)
def test_layer_on_cuda_matches_cpu(structure: str, d: int, rows: int) -> None:
    cpu, gpu = _pair(structure, d)
    x = torch.randn(rows, d, requires_grad=True)
    xg = x.detach().cuda().requires_grad_(True)
    gy = torch.randn(rows, d)
    y, yg = cpu(x), gpu(xg)
    assert prefers_dense(cpu._program, rows) == prefers_dense(gpu._program, rows)
    torch.testing.assert_close(yg.cpu(), y, rtol=1e-4, atol=1e-3)
    want = torch.autograd.grad(y, [x, *cpu.parameters()], gy)
    got = torch.autograd.grad(yg, [xg, *gpu.parameters()], gy.cuda())
    for g, w in zip(got, want, strict=True):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize(("structure", "d", "rows"), CASES[:2])
def test_compiled_layer_on_cuda(structure: str, d: int, rows: int) -> None:
    _, gpu = _pair(structure, d)
    compiled = torch.compile(gpu, fullgraph=True)  # inductor: Triton kernels
    x = torch.randn(rows, d, device="cuda", requires_grad=True)
    y, y_eager = compiled(x), gpu(x)
    torch.testing.assert_close(y, y_eager, rtol=1e-4, atol=1e-4)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_eager,) = torch.autograd.grad(y_eager.sum(), x)
    torch.testing.assert_close(g, g_eager, rtol=1e-4, atol=1e-4)


def test_autocast_bf16_on_cuda() -> None:
    _, gpu = _pair("btt:r=0.25", 256)
    x = torch.randn(64, 256, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = gpu(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in gpu.parameters())


def test_run_resumed_on_another_gpu_continues_it(tmp_path: Path) -> None:
    """Interrupted on cuda:0 at step 15, resumed on the last visible GPU (cuda:0 itself
    when there is one): the curve is the uninterrupted run's."""
    other = f"cuda:{torch.cuda.device_count() - 1}"
    kwargs: dict[str, Any] = {
        "width": 32,
        "steps": 24,
        "eval_every": 3,
        "checkpoint_every": 6,
        "task": "lm",
        "task_kwargs": {"n_eval": 64},
        "batch_size": 8,
    }
    reference = proxy_run("btt", store=RunStore(tmp_path / "ref.sqlite"), device="cuda:0", **kwargs)

    def interrupt_at_15(point: CurvePoint) -> None:
        if point.step == 15:
            raise KeyboardInterrupt

    path = tmp_path / "resume.sqlite"
    with pytest.raises(KeyboardInterrupt):
        proxy_run("btt", store=RunStore(path), device="cuda:0", on_point=interrupt_at_15, **kwargs)
    resumed = proxy_run("btt", store=RunStore(path, lease_s=0), device=other, **kwargs)
    assert resumed.resumed_from == 12 and resumed.status == "finished"
    got = [(p.step, p.eval_loss) for p in resumed.points]
    want = [(p.step, p.eval_loss) for p in reference.points]
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-4)
