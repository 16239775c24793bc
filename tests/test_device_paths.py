"""Every pass keeps its tensors on the model's device and brings its results back to the CPU, checked without a
GPU: the model sits on the ``meta`` device under a device-policy stub (tests/device_guard.py) that fails on any
operation mixing the model's device with the CPU, on a matrix product run on the CPU (a probe left behind), and
records which device type each autocast is opened for."""
import copy

import pytest
import torch

from device_guard import DeviceMixError, ModelDeviceGuard, autocast_stub
from papa_utils import get_task
from papa_utils.core.averages import compute_average_attention
from papa_utils.teaching.head_stats import attention_row_checks, hidden_state_change, recompute_attention
from papa_utils.core.head_scores import head_scores
from papa_utils.teaching.interventions import papa_mix
from papa_utils.core.layout import Encoded
from papa_utils.core.probe import ProbeConfig, rank_heads_by_gates, train_probe
from papa_utils.core.features import averages_and_features, extract_features
from tiny_models import HEADS, LAYERS, VOCAB, tiny_model

L = 12


def toy_data(n, token=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, L), generator=g)
    mask = torch.ones(n, L, dtype=torch.long)
    mask[::2, L - 3:] = 0
    # token tasks: every real position labelled (which rows the probe reads is decided on the CPU)
    labels = torch.randint(0, 5, (n, L), generator=g) if token else torch.randint(0, 2, (n,), generator=g)
    if token:
        labels[mask == 0] = -100
    return Encoded(ids, mask, None, labels)


def on_meta(model):
    model = copy.deepcopy(model).to("meta")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def assert_on_cpu(*tensors):
    for t in tensors:
        assert t.device == torch.device("cpu"), t.device


@pytest.fixture
def guarded(monkeypatch):
    """Run code as if on an accelerator: yields the autocasts opened (device type, dtype), with the guard as
    `.guard` (its ``moved``: integer tensors moved to the model's device)."""
    with autocast_stub(monkeypatch) as opened, ModelDeviceGuard("meta") as guard:
        yield Opened(opened, guard)
    assert guard.checked > 0


class Opened(list):
    def __init__(self, opened, guard):
        super().__init__()
        self.opened, self.guard = opened, guard

    def __iter__(self):
        return iter(self.opened)

    def __eq__(self, other):
        return list(self.opened) == other


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("family", ["bert", "roberta", "deberta"])
def test_backbone_passes_stay_on_the_models_device(family, precision, guarded):
    model = on_meta(tiny_model(family))
    data = toy_data(6)
    avg = compute_average_attention(model, data.batches(4), progress=False, precision=precision)
    assert_on_cpu(avg.averages, avg.counts)
    for heads in ([], [(0, 1), (1, 3)], "all"):
        features = extract_features(model, get_task("sst2"), data, avg, heads, batch_size=4, precision=precision)
        assert_on_cpu(features.states, features.labels, features.example, features.slot)
    avg2, features = averages_and_features(model, get_task("pos"), toy_data(6, token=True), 4, precision=precision)
    assert_on_cpu(avg2.averages, features.states, features.labels, features.example, features.slot)
    scores = head_scores(model, avg, data.batches(4))
    assert_on_cpu(*scores.values())
    assert isinstance(hidden_state_change(model, papa_mix(model, avg), data.batches(4)), float)
    # every autocast was opened for the model's device, in the precision asked for
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    assert set(guarded) == ({("meta", dtype)} if dtype else set())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("protocol,task", [("cached", "sst2"), ("cached", "ner"), ("streaming", "sst2"),
                                           ("streaming", "pos")])  # (NER tags need real positions)
def test_the_probe_trains_on_the_models_device(protocol, task, precision, guarded):
    model = on_meta(tiny_model("bert"))
    token = get_task(task).token_task
    train, dev = toy_data(8, token), toy_data(6, token, seed=1)
    avg = compute_average_attention(model, train.batches(4), progress=False)
    config = ProbeConfig(epochs=1, batch_size=4, feature_batch_size=4, protocol=protocol, precision=precision,
                         probe_precision=precision)
    result = train_probe(model, get_task(task), train, dev, config=config, averages=avg, heads="all")
    assert set(result.metrics) and len(result.curve) == 1
    assert set(guarded) == ({("meta", torch.bfloat16)} if precision == "bf16" else set())
    # only a batch's ids, masks and labels move to the device, never a whole split's (8 training examples)
    assert guarded.guard.moved and len(train.labels) not in {shape[0] for shape in guarded.guard.moved}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_gates_train_on_the_models_device(precision, guarded):
    """In fp16 the gates' backbone runs in fp32: their gradients go back through it, unscaled."""
    model = on_meta(tiny_model("bert"))
    train = toy_data(8)
    avg = compute_average_attention(model, train.batches(4), progress=False)
    result = rank_heads_by_gates(model, get_task("sst2"), train, avg, config=ProbeConfig(batch_size=4, precision=precision))
    assert len(result["ranking"]) == LAYERS * HEADS and len(result["gates"]) == LAYERS
    assert set(guarded) == ({("meta", torch.bfloat16)} if precision == "bf16" else set())


@pytest.fixture
def minilm_on_meta():
    from papa_utils.core import backbones

    model, tokenizer = backbones.cached_model("minilm-l3")
    return on_meta(model), tokenizer


def test_example_attention_and_the_teaching_notebooks_helpers_feed_the_models_device(minilm_on_meta, monkeypatch,
                                                                                     guarded):
    from papa_utils.core import backbones

    model, tokenizer = minilm_on_meta
    monkeypatch.setattr(backbones, "cached_model", lambda name: (model, tokenizer))
    attention, tokens = backbones.example_attention("minilm-l3", "sst2", 16)
    assert_on_cpu(attention)
    assert attention.shape == (3, 12, 16, 16) and len(tokens) == 16
    batch = tokenizer(["a short one", "and a longer sentence here"], padding="max_length", max_length=16,
                      return_tensors="pt")
    mine, models = recompute_attention(model, dict(batch), layer=1, head=4)
    assert mine.device == models.device == torch.device("meta")
    out = model(**{k: v.to("meta") for k, v in batch.items()}, output_attentions=True)
    assert set(attention_row_checks(out.attentions, batch["attention_mask"].to("meta"))) == {
        "max_row_sum_error", "max_padding_weight"}


def test_the_guard_itself_catches_a_cpu_input_and_a_cpu_product(guarded):
    model = on_meta(tiny_model("bert"))
    with pytest.raises(DeviceMixError, match=r"embedding mixes tensors on the model's device \(meta\) with tensors "
                                             r"on \['cpu'\]"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(DeviceMixError, match=r"linear ran on \['cpu'\] while the model is on meta"):
        torch.nn.Linear(2, 2)(torch.ones(1, 2))


def test_a_replaced_projection_takes_the_dtype_of_the_autocast_of_its_own_device(guarded):
    """The zeros that stand in for replaced heads' query/key columns have the dtype a real projection gives under
    the autocast of the model's device (bf16), whatever the CPU's autocast state."""
    from types import SimpleNamespace

    from papa_utils.core.device import backbone_precision
    from papa_utils.core.hooks import DynamicHeadsProjection

    upcoming = SimpleNamespace(gates=None, dynamic=torch.tensor([], dtype=torch.long))
    projection = DynamicHeadsProjection(torch.nn.Linear(4, 8).to("meta"), 2, SimpleNamespace(upcoming=lambda: upcoming))
    x = torch.ones(3, 4, device="meta")
    with backbone_precision("bf16", x.device):
        assert projection(x).dtype == torch.bfloat16 and projection(x).shape == (3, 8)
    assert projection(x).dtype == torch.float32
    assert guarded == [("meta", torch.bfloat16)]
