"""The offline pretrained models: conversion checked against onnxruntime, invariants on real sentences."""
import numpy as np
import pytest
import torch

from papa_utils import ModelNotAvailableError, compute_average_attention, encode, load_model, load_task, replace_heads
from papa_utils.core.models import cache_dir, minilm_l3_onnx_file


def test_minilm_l3_conversion_matches_onnxruntime(minilm_l3, data_dir):
    import onnxruntime

    model, tok = minilm_l3
    texts = load_task("sst2", "validation").head(8).frame["sentence"].tolist()
    enc = tok(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(minilm_l3_onnx_file()))
    outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {
        "input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}))}
    expected = next(v for v in outputs.values() if v.ndim == 3)  # last hidden state [B, S, 384]
    with torch.no_grad():
        got = model(input_ids=torch.tensor(enc["input_ids"]),
                    attention_mask=torch.tensor(enc["attention_mask"])).last_hidden_state.numpy()
    real = enc["attention_mask"].astype(bool)
    assert np.abs(got - expected)[real].max() <= 1e-5
    assert (cache_dir() / "paraphrase-MiniLM-L3-v2" / "model.safetensors").exists()


@pytest.fixture(scope="module", params=["minilm-l6", "minilm-l3", "mpnet-base"])
def real_model(request):
    return load_model(request.param)


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_invariants_on_real_sentences(real_model, task, data_dir):
    model, tok = real_model
    e = encode(load_task(task, "validation").head(4), tok)
    batch = e.model_inputs()
    with torch.no_grad():
        ref = model(**batch, output_attentions=True)
    layers, heads = len(ref.attentions), ref.attentions[0].shape[1]
    avg = compute_average_attention(model, e.batches(2), task=task, progress=False)
    with replace_heads(model, avg, heads=[]):
        with torch.no_grad():
            assert (model(**batch).last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-6
    with replace_heads(model, avg, heads="all"):
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
    m = batch["attention_mask"].float()
    for probs in out.attentions:
        assert torch.allclose(probs.sum(-1), m[:, None, :].expand(-1, heads, -1), atol=1e-5)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() > 1e-2
    real = batch["attention_mask"][0].bool()
    one = {k: v[:1] for k, v in batch.items()}
    own = torch.stack([a[0] for a in ref.attentions])
    half = [(l, h) for l in range(layers) for h in range(0, heads, 2)]
    with replace_heads(model, own, heads=half):
        with torch.no_grad():
            got = model(**one).last_hidden_state[0]
    assert (got - ref.last_hidden_state[0])[real].abs().max() <= 1e-5


def test_unknown_and_unreachable_models_fail_clearly():
    with pytest.raises(ModelNotAvailableError, match=r"cannot load model 'bert-base-uncased': the Hugging Face Hub "
                                                     r"is not reachable .*offline model name \(minilm-l3, minilm-l6, "
                                                     r"mpnet-base\)"):
        load_model("bert-base-uncased")
    with pytest.raises(ModelNotAvailableError, match="'no-such-model'"):
        load_model("no-such-model")
