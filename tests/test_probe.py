"""The probe: protocols agree where they should, seeds are honoured, ranking sorts heads by gate."""
import torch

from papa_utils import Encoded, get_task
from papa_utils.probe import (ProbeConfig, extract_features, rank_heads_by_gates, replaced_counts, train_probe)
from tiny_models import HEADS, LAYERS, tiny_model

L = 16


def toy_data(n, token_task=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, L), generator=g)
    mask = torch.ones(n, L, dtype=torch.long)
    mask[: n // 2, 6: L - 1] = 0
    if token_task:
        labels = torch.randint(0, 5, (n, L), generator=g)
        labels[mask == 0] = -100
        labels[:, 0] = labels[:, L - 1] = -100
    else:
        labels = (ids[:, 1] > 50).long()  # learnable from the first token
    return Encoded(ids, mask, None, labels)


def test_streaming_equals_cached_and_seeds_are_honoured():
    model = tiny_model("bert")
    constants = torch.rand(LAYERS, HEADS, L, L)
    for task_name, token in (("sst2", False), ("pos", True)):
        task = get_task(task_name)
        train, dev = toy_data(48, token), toy_data(24, token, seed=1)
        config = ProbeConfig(epochs=2, batch_size=8)
        for heads in ([], "all"):
            cached = train_probe(model, task, train, dev, seed=1, config=config, averages=constants, heads=heads)
            streamed = train_probe(model, task, train, dev, seed=1, averages=constants, heads=heads,
                                   config=ProbeConfig(epochs=2, batch_size=8, protocol="streaming"))
            assert cached.curve == streamed.curve, (task_name, heads)
        other_seed = train_probe(model, task, train, dev, seed=2, config=config)
        again = train_probe(model, task, train, dev, seed=2, config=config)
        assert other_seed.curve == again.curve
        assert other_seed.curve != cached.curve or heads != []


def test_reference_protocol_runs_the_backbone_with_dropout():
    model = tiny_model("bert")
    task = get_task("sst2")
    train, dev = toy_data(48), toy_data(24, seed=1)
    cached = train_probe(model, task, train, dev, config=ProbeConfig(epochs=1, batch_size=8))
    reference = train_probe(model, task, train, dev, config=ProbeConfig(epochs=1, batch_size=8, protocol="reference"))
    assert cached.curve[0]["train_loss"] != reference.curve[0]["train_loss"]  # dropout changed the features
    assert not model.training


def test_cached_features_keep_only_labelled_tokens():
    model = tiny_model("bert")
    data = toy_data(10, token_task=True)
    features = extract_features(model, get_task("pos"), data)
    assert features.states.shape == ((data.labels != -100).sum().item(), LAYERS + 1, 48)
    assert features.states.dtype == torch.float16
    assert torch.equal(features.labels, data.labels[features.example, features.slot])


def test_ranking_sorts_heads_by_gate():
    model = tiny_model("bert")
    result = rank_heads_by_gates(model, get_task("sst2"), toy_data(32), torch.rand(LAYERS, HEADS, L, L),
                                 config=ProbeConfig(batch_size=8, lr=1e-2))
    gates = torch.tensor(result["gates"])
    ordered = [gates[layer, head].item() for layer, head in result["ranking"]]
    assert ordered == sorted(ordered) and len(set(map(tuple, result["ranking"]))) == LAYERS * HEADS
    assert gates.abs().max() > 0  # the gates learned something
    assert all(p.grad is None for p in model.parameters())  # the backbone stays frozen


def test_replaced_counts_follow_the_papers_fractions():
    assert replaced_counts(144) == [0, 72, 126, 135, 144]
    assert replaced_counts(72) == [0, 36, 63, 68, 72]
    assert replaced_counts(36) == [0, 18, 32, 34, 36]
