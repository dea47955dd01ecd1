"""Tests of search.tasks: seeded proxy tasks and their registry."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from einspace.errors import EinspaceError
from search.tasks import (
    TASKS,
    Cifar10,
    Digits,
    MLPRegression,
    Task,
    TextLM,
    get_task,
    model_kind,
    register_task,
)

_CIFAR: list[Path] = []  # the session's generated CIFAR-10 directory


@pytest.fixture(scope="module", params=sorted(TASKS))
def task_name(request: pytest.FixtureRequest, cifar10_dir: Path) -> str:
    _CIFAR[:] = [cifar10_dir]
    return str(request.param)


def _small(name: str, seed: int = 0) -> Task:
    """A quick-to-build instance of a registered task."""
    kwargs: dict[str, object] = {
        "mlp_regression": {"n_eval": 256},
        "cifar10": {"root": str(_CIFAR[0]) if _CIFAR else None},
        "lm": {"n_ctx": 16},
    }.get(name, {})
    return get_task(name, seed=seed, **kwargs)


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
    x_eval, y_eval = task.eval_set()
    if model_kind(task) == "lm":  # token ids in, next-token ids out, one per position
        n_ctx = task.tokens_per_example  # type: ignore[attr-defined]
        assert x.shape == y.shape == (7, n_ctx)
        assert x.dtype == y.dtype == torch.int64
        assert int(x.max()) < task.d_in and int(y.max()) < task.d_out
        assert x_eval.shape[1] == n_ctx
        logits = torch.zeros(7, n_ctx, task.d_out)
    else:
        assert x.shape == (7, task.d_in)
        assert x.dtype == torch.float32
        assert y.shape[0] == 7
        assert x_eval.shape[1] == task.d_in
        logits = torch.zeros(7, task.d_out)
    assert y_eval.shape[0] == x_eval.shape[0]
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
    x1.add_(1)  # callers get copies
    x2, y2 = task.eval_set()
    x3, y3 = _small(task_name).eval_set()
    assert torch.equal(x2, x3)
    assert torch.equal(y2, y3)
    assert not torch.equal(x1, x2)
    # seeded splits move with the seed; lm and cifar10 hold out a fixed part of their data
    seeded = task_name in ("mlp_regression", "digits")
    assert torch.equal(_small(task_name, seed=1).eval_set()[0], x2) != seeded


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
    [
        (-1, 4, "step = -1 must be an integer ≥ 0; the nearest valid value is step = 0"),
        (0, 0, "batch_size = 0 must be an integer ≥ 1; the nearest valid value is batch_size = 1"),
        (1.5, 4, "step = 1.5 must be an integer ≥ 0; e.g. step = 0"),
        (1, "4", "batch_size = '4' must be an integer ≥ 1; e.g. batch_size = 64"),
    ],
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
        ({"seed": -1}, "seed = -1 must be an integer ≥ 0; the nearest valid value is seed = 0"),
        ({"d_in": 0}, "d_in = 0 must be an integer ≥ 1; the nearest valid value is d_in = 1"),
        ({"n_eval": 1}, "n_eval = 1 must be an integer ≥ 2; the nearest valid value is n_eval = 2"),
        ({"depth": True}, "depth = True must be an integer ≥ 1; e.g. depth = 2"),
    ],
)
def test_bad_mlp_regression_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        get_task("mlp_regression", **kwargs)


def test_bad_digits_fraction() -> None:
    with pytest.raises(EinspaceError, match="eval_fraction must be in"):
        Digits(eval_fraction=1.5)


# --------------------------------------------------------------------------- lm


def test_lm_default_corpus_is_the_documentation_topics() -> None:
    from pydoc_data.topics import topics

    task = TextLM(n_ctx=32, eval_fraction=0.1, n_eval=8)
    text = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    assert task.n_train_bytes + task.n_eval_bytes == len(text) > 400_000
    assert task.n_eval_bytes == round(0.1 * len(text))
    assert (task.d_in, task.d_out, task.tokens_per_example) == (256, 256, 32)
    # the held-out windows are slices of the text's last 10 %, the first at its start
    x, y = task.eval_set()
    assert x.shape == y.shape == (8, 32)
    held = text[task.n_train_bytes :]
    assert bytes(x[0].tolist()) == held[:32] and bytes(y[0].tolist()) == held[1:33]
    assert bytes(y[-1].tolist()) == held[-32:]
    # training windows lie in the training part and are shifted by one
    xb, yb = task.train_batch(5, 16)
    train = text[: task.n_train_bytes]
    for row_x, row_y in zip(xb.tolist(), yb.tolist(), strict=True):
        start = train.find(bytes(row_x))
        assert start >= 0 and train[start + 1 : start + 33] == bytes(row_y)
    assert task.corpus == "pydoc_data.topics"


def test_lm_loss_is_per_byte_cross_entropy() -> None:
    task = TextLM(n_ctx=8, n_eval=4)
    _, y = task.train_batch(0, 3)
    assert float(task.loss(torch.zeros(3, 8, 256), y)) == pytest.approx(math.log(256))
    perfect = torch.nn.functional.one_hot(y, 256).float() * 100
    assert float(task.loss(perfect, y)) < 1e-6


def test_lm_trains_on_a_users_file(tmp_path: Path) -> None:
    text = ("the quick brown fox jumps over the lazy dog. " * 40).encode()
    file = tmp_path / "mine.txt"
    file.write_bytes(text)
    task = get_task("lm", path=str(file), n_ctx=16, n_eval=4)
    assert task.corpus == str(file)  # type: ignore[attr-defined]
    x, _ = task.train_batch(0, 4)
    assert all(bytes(row).decode() in text.decode() for row in x.tolist())
    assert task.digest != TextLM(n_ctx=16).digest  # type: ignore[attr-defined]
    assert "path=" in repr(task)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"short text", "has 10 bytes: too short for n_ctx = 16"),
    ],
)
def test_lm_bad_file_is_named(tmp_path: Path, content: bytes | None, match: str) -> None:
    file = tmp_path / "corpus.txt"
    if content is not None:
        file.write_bytes(content)
    with pytest.raises(EinspaceError, match=match) as info:
        TextLM(n_ctx=16, path=str(file))
    assert str(file) in str(info.value)


def test_lm_bad_arguments() -> None:
    with pytest.raises(EinspaceError, match="n_ctx = 0 must be an integer ≥ 1"):
        TextLM(n_ctx=0)
    with pytest.raises(EinspaceError, match="eval_fraction must be"):
        TextLM(eval_fraction=0.9)


# --------------------------------------------------------------------------- cifar10


def test_cifar10_reads_the_python_batches(cifar10_dir: Path) -> None:
    import pickle

    task = Cifar10(str(cifar10_dir), seed=0)
    assert (task.d_in, task.d_out, task.n_train, task.n_eval) == (3072, 10, 60, 12)
    with (cifar10_dir / "test_batch").open("rb") as fh:
        test = pickle.load(fh, encoding="bytes")
    x, y = task.eval_set()
    assert y.tolist() == test[b"labels"]
    # standardization per channel with the training images' statistics, recomputed here
    train = []
    for i in range(1, 6):
        with (cifar10_dir / f"data_batch_{i}").open("rb") as fh:
            train.append(pickle.load(fh, encoding="bytes")[b"data"])
    pixels = torch.tensor(__import__("numpy").concatenate(train), dtype=torch.float64)
    per_channel = pixels.reshape(-1, 3, 1024).transpose(0, 1).reshape(3, -1)
    mean, std = per_channel.mean(dim=1), per_channel.std(dim=1, unbiased=False)
    raw = torch.tensor(test[b"data"], dtype=torch.float64).reshape(-1, 3, 1024)
    want = ((raw - mean[None, :, None]) / std[None, :, None]).reshape(-1, 3072)
    torch.testing.assert_close(x.double(), want, atol=1e-5, rtol=1e-5)
    # the parent folder works too; training batches come from the five data batches
    parent = Cifar10(str(cifar10_dir.parent))
    xb, yb = parent.train_batch(0, 60)
    assert sorted(yb.tolist()) == sorted(task._train[1].tolist())
    assert xb.shape == (60, 3072)


def test_cifar10_missing_files_name_the_directory(tmp_path: Path, cifar10_dir: Path) -> None:
    with pytest.raises(EinspaceError, match="does not exist") as info:
        Cifar10(str(tmp_path / "nowhere"))
    assert "cifar-10-python.tar.gz" in str(info.value)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "data_batch_1").write_bytes((cifar10_dir / "data_batch_1").read_bytes())
    with pytest.raises(EinspaceError, match="lacks data_batch_2") as info:
        Cifar10(str(partial))
    assert str(partial) in str(info.value) and "test_batch" in str(info.value)
    with pytest.raises(EinspaceError, match="needs root="):
        get_task("cifar10")


def test_cifar10_rejects_bad_and_unsafe_pickles(
    tmp_path: Path, cifar10_writer: Callable[..., Path]
) -> None:
    import os
    import pickle

    folder = cifar10_writer(tmp_path / "bad", n_per_batch=4)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(EinspaceError, match="is not a CIFAR-10 python batch"):
        Cifar10(str(folder))
    with (folder / "test_batch").open("wb") as fh:  # a pickle that would run code
        pickle.dump({b"data": os.getcwd, b"labels": []}, fh)
    with pytest.raises(EinspaceError, match="not allowed"):
        Cifar10(str(folder))


def test_integral_float_batch_arguments_draw_the_int_batch(task_name: str) -> None:
    task = _small(task_name)
    x_int, y_int = task.train_batch(3, 8)
    x_float, y_float = task.train_batch(3.0, 8.0)  # type: ignore[arg-type]
    assert x_float.shape[0] == 8
    assert torch.equal(x_float, x_int) and torch.equal(y_float, y_int)
