"""The teaching notebook's exercises: every check accepts the reference solution, rejects the function the
notebook ships (unsolved) and a wrong answer, and never raises."""
import ast
import re
from pathlib import Path

import pytest
import torch

from papa_utils import solutions
from papa_utils.exercises import check_entropy, check_prediction, check_score, check_substitute

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "src" / "00_anatomy_of_attention.py"


def shipped(name: str):
    """The function `name` exactly as the teaching notebook defines it."""
    tree = ast.parse(NOTEBOOK.read_text())
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {}
    exec(compile(ast.Module([node], []), str(NOTEBOOK), "exec"), {"torch": torch}, namespace)
    return namespace[name]


def inputs():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0]])
    pairs = (mask[:, :, None] * mask[:, None, :]).bool()[:, None]
    attention = torch.softmax(torch.randn(2, 3, 6, 6, generator=g).masked_fill(~pairs, -1e9), -1) * pairs
    constants = torch.rand(2, 3, 6, 6, generator=g)
    return attention, constants, mask


def exercises():
    attention, constants, mask = inputs()
    substitute = solutions.substitute(constants, mask)
    return {
        "my_entropy": (check_entropy, solutions.entropy, (attention,), lambda p: p.sum(-1)),
        "my_substitute": (check_substitute, solutions.substitute, (constants, mask), lambda C, m: C[None].repeat(2, 1, 1, 1, 1)),
        "my_score": (check_score, solutions.score, (attention[0, 1], substitute[0, 0, 1], mask[0]),
                     lambda a, s, m: (a - s).abs().mean()),
    }


@pytest.mark.parametrize("name", ["my_entropy", "my_substitute", "my_score"])
def test_a_check_accepts_the_solution_and_rejects_the_shipped_stub_and_a_wrong_answer(name):
    check, solution, args, wrong = exercises()[name]
    assert check(solution, *args).passed and str(check(solution, *args)).endswith(": correct")
    stub = check(shipped(name), *args)
    assert not stub.passed and "not solved yet" in stub.message
    mistaken = check(wrong, *args)
    assert not mistaken.passed and re.search(r"not yet right", mistaken.message), mistaken.message
    broken = check(lambda *a: 1 / 0, *args)
    assert not broken.passed and "your function raised ZeroDivisionError: division by zero" in broken.message


def test_the_prediction_check_can_fail():
    """Exercise 4 passes only a pick less input-dependent than the average head."""
    scores = torch.arange(24, dtype=torch.float32).reshape(2, 12) / 24  # head (0, 0) the least dependent
    stats = {"mass_sep": -scores}  # separator mass that follows the score exactly
    passed = check_prediction(solutions.prediction, stats, scores, 3)
    assert passed.passed and "3 of 3 among the 3 least input-dependent" in passed.message
    worst = check_prediction(lambda stats, n: [(1, 11), (1, 10), (1, 9)], stats, scores, 3)
    assert not worst.passed and "not yet better than chance" in worst.message
    assert not check_prediction(lambda stats, n: [(0, 0)] * 3, stats, scores, 3).passed  # not distinct
    assert not check_prediction(lambda stats, n: [(2, 0), (0, 1), (0, 2)], stats, scores, 3).passed  # no layer 2
    stub = check_prediction(shipped("my_prediction"), stats, scores, 3)
    assert not stub.passed and "not solved yet" in stub.message


def test_the_reference_prediction_passes_on_the_notebooks_default(data_dir):
    """The notebook's defaults: the smoke profile's first model on MRPC, the first 64 training examples."""
    from papa_utils.averages import compute_average_attention
    from papa_utils.backbones import cached_model
    from papa_utils.head_stats import head_scores, head_statistics
    from papa_utils.packing import backbone_batches
    from papa_utils.profiles import get_profile
    from papa_utils.steps import encoded, task_data

    profile = get_profile("smoke")
    model, tokenizer = cached_model(profile.models[0])
    corpus = encoded(profile.models[0], task_data("mrpc", "train", 64), profile.length("mrpc"))
    averages = compute_average_attention(model, backbone_batches(corpus, 32), task="mrpc")
    stats = head_statistics(model, tokenizer, backbone_batches(corpus, 32))
    scores = head_scores(model, averages, backbone_batches(corpus, 32))["input_dependence"]
    check = check_prediction(solutions.prediction, stats, scores, max(1, scores.numel() // 10))
    assert check.passed, check.message


def test_an_answer_of_the_wrong_kind_is_reported_not_raised():
    attention, constants, mask = inputs()
    args = (attention[0, 1], solutions.substitute(constants, mask)[0, 0, 1], mask[0])
    for answer in ("0.1", {"score": 0.1}, None):
        check = check_score(lambda a, s, m: answer, *args)
        assert not check.passed and "not yet right: expected a tensor of shape ()" in check.message
    assert check_score(lambda a, s, m: float(solutions.score(a, s, m)), *args).passed  # a plain number is fine
