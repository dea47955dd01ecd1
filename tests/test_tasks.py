"""Tests of search.tasks: seeded proxy tasks and their registry."""

from __future__ import annotations

import math

import pytest
import torch

from einspace.errors import EinspaceError
from search.tasks import TASKS, Digits, MLPRegression, Task, get_task, register_task


@pytest.fixture(scope="module", params=sorted(TASKS))
def task_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _small(name: str, seed: int = 0) -> Task:
    """A quick-to-build instance of a registered task."""
    return get_task(name, seed=seed, **({"n_eval": 256} if name == "mlp_regression" else {}))


# --------------------------------------------------------------------------- every task


def test_registered_tasks_satisfy_the_protocol(task_name: str) -> None:
    task = _small(task_name)
    assert isinstance(task, Task)
    assert task.name == task_name
    assert task.d_in >= 1
    assert task.d_out >= 1


def test_shapes_and_dtypes(task_name: str) -> None:
    task = _small(task_name)
    x, y = task.train_batch(step=0, batch_size=7)
    assert x.shape == (7, task.d_in)
    assert x.dtype == torch.float32
    assert y.shape[0] == 7
    x_eval, y_eval = task.eval_set()
    assert x_eval.shape[1] == task.d_in
    assert y_eval.shape[0] == x_eval.shape[0]
    logits = torch.zeros(7, task.d_out)
    loss = task.loss(logits, y)
    assert loss.shape == ()
    assert math.isfinite(float(loss))


def test_batches_are_a_function_of_seed_and_step(task_name: str) -> None:
    task, same = _small(task_name), _small(task_name)
    other_seed = _small(task_name, seed=1)
    x0, y0 = task.train_batch(3, 32)
    for xa, ya in (task.train_batch(3, 32), same.train_batch(3, 32)):
        assert torch.equal(xa, x0)
        assert torch.equal(ya, y0)
    task.train_batch(4, 32)  # drawing another step does not move step 3
    assert torch.equal(task.train_batch(3, 32)[0], x0)
    assert not torch.equal(task.train_batch(4, 32)[0], x0)
    assert not torch.equal(other_seed.train_batch(3, 32)[0], x0)


def test_given_generator_is_used_and_reproducible(task_name: str) -> None:
    task = _small(task_name)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a1, b1 = task.train_batch(0, 16, g1), task.train_batch(0, 16, g1)
    a2 = task.train_batch(0, 16, g2)
    assert torch.equal(a1[0], a2[0])
    assert not torch.equal(a1[0], b1[0])  # the generator advanced
    assert not torch.equal(a1[0], task.train_batch(0, 16)[0])


def test_eval_set_is_fixed_and_protected(task_name: str) -> None:
    task = _small(task_name)
    x1, _ = task.eval_set()
    x1.add_(1.0)  # callers get copies
    x2, y2 = task.eval_set()
    x3, y3 = _small(task_name).eval_set()
    assert torch.equal(x2, x3)
    assert torch.equal(y2, y3)
    assert not torch.equal(x1, x2)
    assert not torch.equal(_small(task_name, seed=1).eval_set()[0], x2)


def test_device_argument(task_name: str) -> None:
    task = _small(task_name)
    x, y = task.train_batch(0, 4, device="cpu")
    assert x.device.type == y.device.type == "cpu"
    with pytest.raises(EinspaceError, match="unknown device 'gpu0'"):
        task.eval_set(device="gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_numbers_on_cuda(task_name: str) -> None:
    task = _small(task_name)
    x_cpu, y_cpu = task.train_batch(2, 64)
    x_gpu, y_gpu = task.train_batch(2, 64, device="cuda")
    assert x_gpu.device.type == "cuda"
    assert torch.equal(x_gpu.cpu(), x_cpu)
    assert torch.equal(y_gpu.cpu(), y_cpu)
    assert torch.equal(task.eval_set("cuda")[0].cpu(), task.eval_set()[0])


@pytest.mark.parametrize(
    ("step", "batch_size", "match"),
    [(-1, 4, "step must be"), (0, 0, "batch_size must be"), (1.0, 4, "step must be")],
)
def test_bad_batch_arguments(task_name: str, step: object, batch_size: object, match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        _small(task_name).train_batch(step, batch_size)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mlp regression


def test_mlp_regression_targets_are_standardized_and_follow_the_teacher() -> None:
    task = MLPRegression(seed=3)
    x, y = task.eval_set()
    assert x.shape == (4096, 8)
    assert y.shape == (4096, 1)
    # Standardized over another sample: mean ~ 0 and variance ~ 1 within sampling error.
    assert abs(float(y.mean())) < 0.1
    assert float(y.var()) == pytest.approx(1.0, abs=0.15)
    # Inputs are N(0, I).
    assert float(x.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(x.var()) == pytest.approx(1.0, abs=0.05)
    # Targets are a deterministic function of the inputs: equal inputs, equal targets.
    xb, yb = task.train_batch(0, 8)
    both = torch.cat([xb, xb])
    assert torch.equal(task._teacher(both)[:8], task._teacher(both)[8:])
    assert torch.allclose(task._teacher(xb), yb)
    assert float(task.loss(y, y)) == 0.0
    assert float(task.loss(torch.zeros_like(y), y)) == pytest.approx(float((y**2).mean()))


def test_mlp_regression_teacher_depends_on_seed_and_activation() -> None:
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    tanh0, tanh1 = MLPRegression(seed=0, n_eval=16), MLPRegression(seed=1, n_eval=16)
    relu0 = MLPRegression(seed=0, n_eval=16, activation="relu")
    assert not torch.allclose(tanh0._teacher(x), tanh1._teacher(x))
    assert not torch.allclose(tanh0._teacher(x), relu0._teacher(x))


# --------------------------------------------------------------------------- digits


def test_digits_split_and_standardization() -> None:
    task = Digits(eval_fraction=0.25, seed=0)
    assert (task.n_train, task.n_eval) == (1797 - 449, 449)  # round(1797 * 0.25) = 449
    x_eval, y_eval = task.eval_set()
    x_all = torch.cat([task._train[0], x_eval])
    assert x_all.shape == (1797, 64)
    assert y_eval.dtype == torch.int64
    assert set(torch.cat([task._train[1], y_eval]).tolist()) == set(range(10))
    mean = task._train[0].mean(dim=0)
    std = task._train[0].std(dim=0)
    varying = std > 0
    assert torch.allclose(mean, torch.zeros(64), atol=1e-5)
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-5)
    # No image is in both parts.
    train_rows = {tuple(r) for r in task._train[0].tolist()}
    shared = sum(tuple(r) in train_rows for r in x_eval.tolist())
    assert shared < 5  # a few digit images are exact duplicates in the data set


def test_digits_batch_has_distinct_examples_and_known_loss() -> None:
    task = Digits(seed=2)
    x, y = task.train_batch(0, task.n_train)
    assert len({tuple(r) for r in x.tolist()}) > task.n_train - 5
    assert float(task.loss(torch.zeros(len(y), 10), y)) == pytest.approx(math.log(10))
    big_x, _ = task.train_batch(0, task.n_train + 10)
    assert big_x.shape == (task.n_train + 10, 64)


# --------------------------------------------------------------------------- registry


def test_unknown_task_name_lists_valid_names() -> None:
    with pytest.raises(EinspaceError, match="unknown task 'mlp_regresion'") as info:
        get_task("mlp_regresion")
    assert "did you mean 'mlp_regression'" in str(info.value)
    assert "'digits'" in str(info.value)


def test_unknown_argument_is_named() -> None:
    with pytest.raises(EinspaceError, match="did you mean 'eval_fraction'"):
        get_task("digits", eval_frac=0.1)


def test_registering_a_name_twice_raises() -> None:
    with pytest.raises(EinspaceError, match="already registered"):
        register_task("mlp_regression", MLPRegression)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "tahn"}, "did you mean 'tanh'"),
        ({"seed": -1}, "seed must be"),
        ({"d_in": 0}, "d_in must be"),
    ],
)
def test_bad_mlp_regression_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        get_task("mlp_regression", **kwargs)


def test_bad_digits_fraction() -> None:
    with pytest.raises(EinspaceError, match="eval_fraction must be in"):
        Digits(eval_fraction=1.5)
