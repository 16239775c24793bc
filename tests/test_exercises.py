"""The teaching notebook's exercises: every check accepts the reference solution, rejects the function the
notebook ships (unsolved) and a wrong answer, and never raises."""
import ast
import re
from pathlib import Path

import pytest
import torch

from papa_utils.teaching import solutions
from papa_utils.teaching.exercises import check_entropy, check_prediction, check_score, check_substitute

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
    """Exercise 4 passes only a pick less input-dependent than a random pick from the same layers."""
    scores = torch.arange(24, dtype=torch.float32).reshape(2, 12) / 24  # head (0, 0) the least dependent
    stats = {"mass_sep": -scores}  # separator mass that follows the score exactly
    passed = check_prediction(solutions.prediction, stats, scores, 3)
    assert passed.passed and "3 of 3 among the 3 least input-dependent" in passed.message
    worst = check_prediction(lambda stats, n: [(1, 11), (1, 10), (1, 9)], stats, scores, 3)
    assert not worst.passed and "not yet better than a same-layer random pick" in worst.message
    assert not check_prediction(lambda stats, n: [(0, 0)] * 3, stats, scores, 3).passed  # not distinct
    assert not check_prediction(lambda stats, n: [(2, 0), (0, 1), (0, 2)], stats, scores, 3).passed  # no layer 2
    stub = check_prediction(shipped("my_prediction"), stats, scores, 3)
    assert not stub.passed and "not solved yet" in stub.message


def test_the_reference_prediction_passes_on_the_notebooks_default(data_dir):
    """The notebook's defaults: the smoke profile's first model on MRPC, the first 64 training examples."""
    from papa_utils.core.averages import compute_average_attention
    from papa_utils.core.backbones import cached_model
    from papa_utils.teaching.head_stats import head_statistics
    from papa_utils.core.head_scores import head_scores
    from papa_utils.core.packing import backbone_batches
    from papa_utils.settings.profiles import get_profile
    from papa_utils.runner.steps import encoded, task_data

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


def test_exercise_4_needs_more_than_the_layer():
    """Input dependence rises with depth: any three heads of layer 0 beat the average head, but not a random pick
    from layer 0; the reference (separator mass that follows the score) does."""
    scores = torch.arange(24, dtype=torch.float32).reshape(2, 12) / 24
    stats = {"mass_sep": -scores}
    layer_only = check_prediction(lambda stats, n: [(0, 9), (0, 10), (0, 11)], stats, scores, 3)
    assert not layer_only.passed and "not yet better than a same-layer random pick" in layer_only.message
    assert "against 0.2292 for a random pick from the same layers" in layer_only.message
    assert check_prediction(solutions.prediction, stats, scores, 3).passed


def test_exercise_4_rejects_the_printed_ranking_even_once_a_later_cell_has_bound_it():
    """A class that runs section 5 and then the check again has `ranking` and `scores` in the notebook's scope:
    an answer that copies them is refused with the reason, and an answer from `stats` alone still runs with the
    notebook's modules and functions."""
    scores = torch.arange(24, dtype=torch.float32).reshape(2, 12) / 24
    stats = {"mass_sep": -scores}
    notebook = {"torch": torch, "ranking": [(0, 0), (0, 1), (0, 2), (0, 3)], "scores": {"input_dependence": scores}}
    exec("def copied(stats, n):\n    return ranking[:n]\n"
         "def rescored(stats, n):\n    s = scores['input_dependence']\n"
         "    return [divmod(int(i), s.shape[1]) for i in torch.argsort(s.flatten())[:n]]\n"
         "def from_stats(stats, n):\n    s = -stats['mass_sep']\n"
         "    return [divmod(int(i), s.shape[1]) for i in torch.argsort(s.flatten())[:n]]\n", notebook)
    for name, read in (("copied", "ranking"), ("rescored", "scores")):
        check = check_prediction(notebook[name], stats, scores, 3)
        assert not check.passed and check.message == (
            f"exercise 4: your function reads {read!r} from the notebook: answer from its arguments alone (the check "
            f"hides the notebook's data, the scores and the ranking among it)")
    assert check_prediction(notebook["from_stats"], stats, scores, 3).passed
    # what a function may use: the notebook's tools (a numpy function, a partial), keyword-only defaults
    import functools

    import numpy as np

    notebook.update(argsort=np.argsort, flat=functools.partial(np.reshape, shape=-1), __=[(0, 0)])
    exec("def with_tools(stats, n, *, sign=-1):\n    s = (sign * stats['mass_sep']).numpy()\n"
         "    return [divmod(int(i), s.shape[1]) for i in argsort(flat(s))[:n]]\n"
         "def from_history(stats, n):\n    return __[:n]\n", notebook)
    assert check_prediction(notebook["with_tools"], stats, scores, 3).passed
    assert "reads '__' from the notebook" in check_prediction(notebook["from_history"], stats, scores, 3).message
    typo = check_prediction(lambda stats, n: statz, stats, scores, 3)  # noqa: F821
    assert not typo.passed and typo.message == "exercise 4: your function raised NameError: name 'statz' is not defined"


def test_exercise_4_is_asked_before_the_notebook_computes_any_score():
    """The ranking is not in scope when the student writes the pick: no code cell before exercise 4's check binds a
    name `scores` or `ranking` (the parameters cell's empty `ranking` string, the profile's ranking choice, aside),
    and the check measures the scores without naming them; section 5, after it, binds both."""
    import nbformat

    cells = [c.source for c in nbformat.read(ROOT / "notebooks" / "00_anatomy_of_attention.ipynb", 4).cells
             if c.cell_type == "code"]
    check = next(i for i, c in enumerate(cells) if "check_prediction(my_prediction" in c)

    def bound(source):
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    assert "ranking" in bound(cells[0]) and "scores" not in bound(cells[0])  # the parameters cell: a string
    assert not {"scores", "ranking"} & set().union(*(bound(c) for c in cells[1:check + 1]))
    assert {"scores", "ranking"} <= set().union(*(bound(c) for c in cells[check + 1:]))


def test_the_template_ships_five_unsolved_exercises():
    stubs = re.findall(r'raise NotImplementedError\("exercise (\d)"\)', NOTEBOOK.read_text())
    assert sorted(stubs) == ["1", "2", "3", "4", "5"]


def test_exercise_5_checks_an_own_intervention_and_names_nan_and_shape_errors():
    """Every real token on the final separator: the reference passes and reports its cost beside PAPA's; the stub,
    another pattern, NaN and a wrong shape are each named."""
    from papa_utils.core.averages import AttentionAverages
    from papa_utils.teaching.exercises import check_intervention
    from papa_utils.teaching.interventions import first_token, on_heads
    from tiny_models import HEADS, LAYERS, tiny_batch, tiny_model

    model = tiny_model("bert")
    batch = tiny_batch(16)
    averages = torch.rand(LAYERS, HEADS, 16, 16, generator=torch.Generator().manual_seed(0))
    batches = [batch]
    solved = check_intervention(solutions.final_separator, model, batches, averages)
    assert solved.passed and solved.message.startswith("exercise 5: correct. With every head on the final separator")
    assert "with PAPA's average on every head" in solved.message
    stub = check_intervention(shipped("my_intervention"), model, batches, averages)
    assert not stub.passed and "not solved yet" in stub.message
    other = check_intervention(on_heads(first_token), model, batches, averages)
    assert not other.passed and "not yet right (largest difference from the reference" in other.message
    nan = check_intervention(lambda layer, p, m: p * float("nan"), model, batches, averages)
    assert not nan.passed and "your answer has" in nan.message and "NaN entries" in nan.message
    shape = check_intervention(lambda layer, p, m: p[0], model, batches, averages)
    assert not shape.passed and f"expected a tensor of shape (3, {HEADS}, 16, 16), got ({HEADS}, 16, 16)" in shape.message
    assert isinstance(AttentionAverages, type)


def test_checks_name_nan_answers():
    attention, constants, mask = inputs()
    nan = check_entropy(lambda p: -(p * p.log()).sum(-1), attention)  # 0 log 0 on the padded keys
    assert not nan.passed and "NaN entries (0 * log 0 and 0 / 0 give NaN" in nan.message
