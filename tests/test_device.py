"""The device and precision policy: "auto" picks the faster precision on this machine by timing the model's own
matrix products, once, and says what it measured."""
import json
from dataclasses import replace

import pytest
import torch

from papa_utils.core import device
from papa_utils.settings.choices import CHOICES
from papa_utils.core.device import BF16_MARGIN, auto_precision


@pytest.mark.parametrize("ratio,choice", [(0.5, "bf16"), (BF16_MARGIN - 0.01, "bf16"), (BF16_MARGIN + 0.01, "fp32"),
                                          (1.6, "fp32")])
def test_auto_precision_picks_bf16_only_when_clearly_faster(monkeypatch, ratio, choice):
    times = {"fp32": 1.0, "bf16": ratio}
    monkeypatch.setattr(device, "_time_products", lambda shapes, precision, dev, repeats: times[precision])
    found = auto_precision(64, 256, 128, "cpu")
    assert found["choice"] == choice and found["fp32_seconds"] == 1.0 and found["bf16_seconds"] == ratio
    assert found["measured"]


def test_auto_precision_measures_once_per_machine_and_shape(tmp_path, monkeypatch):
    calls = []

    def timed(shapes, precision, dev, repeats):
        calls.append((tuple(shapes), precision))
        return 1.0 if precision == "fp32" else 0.5

    monkeypatch.setattr(device, "_time_products", timed)
    cache = tmp_path / "precision.json"
    first = auto_precision(64, 256, 128, "cpu", cache_file=cache)
    again = auto_precision(64, 256, 128, "cpu", cache_file=cache)
    assert len(calls) == 2 and first["measured"] and not again["measured"]
    assert {k: v for k, v in first.items() if k != "measured"} == {k: v for k, v in again.items() if k != "measured"}
    # the model's own products: four hidden x hidden projections and the feed-forward pair
    assert calls[0][0] == ((128, 64, 64),) * 4 + ((128, 64, 256), (128, 256, 64))
    auto_precision(64, 512, 128, "cpu", cache_file=cache)  # another shape is measured again
    assert len(calls) == 4 and len(json.loads(cache.read_text())) == 2


def test_auto_precision_really_times_products():
    found = auto_precision(32, 64, 64, "cpu", repeats=1)
    assert found["choice"] in ("fp32", "bf16") and found["fp32_seconds"] > 0 and found["bf16_seconds"] > 0


def test_the_bf16_timing_runs_its_products_under_autocast(monkeypatch):
    """What a bf16 pass pays: fp32 operands cast by autocast, so the products come out in bf16."""
    seen = []
    original = device.backbone_precision

    def spy(precision, dev=None):
        seen.append((precision, torch.is_autocast_enabled("cpu")))
        return original(precision, dev)

    monkeypatch.setattr(device, "backbone_precision", spy)
    out = {}
    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: out.setdefault(
        (a.dtype, torch.is_autocast_enabled("cpu")), real_matmul(a, b)))
    device._time_products([(4, 8, 8)], "bf16", torch.device("cpu"), 1)
    device._time_products([(4, 8, 8)], "fp32", torch.device("cpu"), 1)
    assert [p for p, _ in seen] == ["bf16", "fp32"]
    assert out[torch.float32, True].dtype == torch.bfloat16  # fp32 operands, autocast on: bf16 products
    assert out[torch.float32, False].dtype == torch.float32


def test_a_profile_resolves_auto_per_model_and_keys_follow_the_choice(monkeypatch):
    from papa_utils.core import backbones
    from papa_utils.runner import steps
    from papa_utils.settings import profiles

    profile = replace(profiles.get_profile("smoke"), precision="auto")
    with pytest.raises(ValueError, match=f"unknown precision 'fp8'; precisions: {', '.join(CHOICES)}"):
        replace(profile, precision="fp8")
    assert backbones.probe_config(replace(profile, precision="fp16"), "minilm-l3").probe_precision == "fp32"
    data = steps.task_data("sst2", "train", 8)
    keys = {}
    for choice in ("fp32", "bf16"):
        monkeypatch.setattr(backbones, "precision_choice", lambda p, m, c=choice: {"choice": c})
        assert backbones.precision_of(profile, "minilm-l3") == choice
        keys[choice] = steps.averages_key(profile, "minilm-l3", "sst2", data)
    assert keys["fp32"] == steps.averages_key(replace(profile, precision="fp32"), "minilm-l3", "sst2", data)
    assert keys["fp32"] != keys["bf16"]


def test_a_model_that_cannot_run_in_bf16_says_why(monkeypatch):
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from tiny_models import tiny_model

    problem = device.precision_problem(tiny_model("deberta"), "bf16")
    assert problem == "RuntimeError: value cannot be converted to type c10::BFloat16 without overflow"
    assert device.precision_problem(tiny_model("bert"), "bf16") is None
    assert device.precision_problem(tiny_model("deberta"), "fp32") is None


def test_deberta_falls_back_to_fp32_in_the_log_and_run_json(tmp_path, monkeypatch, caplog):
    """A profile asking for bf16: DeBERTa v1 (which fails in bf16 inside transformers) runs in fp32 and says so;
    BERT keeps bf16; run.json records both."""
    from papa_utils.core import backbones
    from papa_utils.runner import pipeline
    from papa_utils.settings import profiles

    monkeypatch.setenv("PAPA_MODELS_DIR", str(tmp_path / "models"))
    for cache in (backbones.cached_model, backbones.precision_fallback):
        cache.cache_clear()
    monkeypatch.setattr("papermill.execute_notebook", lambda *a, **k: None)  # run.json only
    try:
        models = ("papa-dry/bert-tiny-random", "papa-dry/deberta-tiny-random")
        profile = replace(profiles.get_profile("paper-dry"), models=models, precision="bf16")
        with caplog.at_level("WARNING", logger="papa_utils"):
            assert [backbones.precision_of(profile, m) for m in models] == ["bf16", "fp32"]
            assert backbones.probe_config(profile, models[1]).precision == "fp32"
            pipeline.run_notebooks(profile, tmp_path / "run", notebooks=["00_anatomy_of_attention"])
        warned = [r.getMessage() for r in caplog.records if "cannot run in" in r.getMessage()]
        assert warned == ["papa-dry/deberta-tiny-random cannot run in bf16 on cpu (RuntimeError: value cannot be "
                          "converted to type c10::BFloat16 without overflow): its passes run in fp32"]  # said once
        run = json.loads((tmp_path / "run" / "run.json").read_text())
        assert run["precision"] == {
            models[0]: {"asked": "bf16", "used": "bf16"},
            models[1]: {"asked": "bf16", "used": "fp32",
                        "fallback": "RuntimeError: value cannot be converted to type c10::BFloat16 without overflow"}}
    finally:
        for cache in (backbones.cached_model, backbones.precision_fallback):
            cache.cache_clear()
