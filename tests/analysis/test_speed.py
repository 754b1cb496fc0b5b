"""The benchmark's library: summaries, serving rates, the plan's checks, the dtype policy.

No timing assertions: figures depend on the machine and its load.
"""

import dataclasses

import numpy as np
import pytest

from keras_resnet_cifar.analysis import speed
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError

def test_serving_rates_times_batch_1_and_full_batches_of_128():
    calls = []

    def predict(pixels, batch_size):
        calls.append((len(pixels), batch_size))
        return np.zeros((len(pixels), 10), np.float32)

    images = np.zeros((5, 32, 32, 3), np.uint8)  # fewer than a batch: repeated to 128
    rates = speed.serving_rates(predict, images, runs=20)
    assert set(calls) == {(1, 1), (128, 128)}
    assert calls.count((1, 1)) == 3 + 20 and calls.count((128, 128)) == 3 + 3  # warm-up + timed
    assert len(rates["latency_ms_batch1"]["samples"]) == 20
    assert len(rates["images_per_sec_batch128"]["samples"]) == 3


def test_summarize():
    s = speed.summarize([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0)
    assert s["spread_pct"] == pytest.approx(100.0)


@pytest.mark.parametrize("name", ["steps", "repeats", "pipeline_batches", "inference_runs"])
def test_counts_beyond_their_bound_are_refused_before_any_work(name):
    # Issue 29: benchmark --repeats=1e20 or --inference_runs=1e20 never ended.
    plan = speed.Plan(base=TrainConfig(), models=("resnet8",))
    most = speed.MAX_COUNTS[name]
    speed.check_plan(dataclasses.replace(plan, **{name: most}))
    for value in (most + 1, 10**20, 0):
        with pytest.raises(UserError) as e:
            speed.check_plan(dataclasses.replace(plan, **{name: value}))
        assert e.value.argument == name and f"{most:,}" in str(e.value)
        assert f"got {value}" in str(e.value)


def test_each_variant_is_evaluated_under_its_own_dtype_policy(monkeypatch):
    # Keras reads the global policy when it traces evaluate: a bfloat16 model evaluated
    # after a float32 build computed in float32 (2026-12-07: the same 783 img/s for all).
    import keras

    seen = []

    def eval_rate(model, split, batch_size, *, repeats):
        seen.append((model.layers[1].dtype_policy.name, keras.config.dtype_policy().name))
        return {"median": 1.0}

    monkeypatch.setattr(speed, "eval_rate", eval_rate)
    base = TrainConfig(dataset="synthetic", batch_size=32, synthetic_train_size=128,
                       synthetic_test_size=64)
    plan = speed.Plan(base=base, models=("resnet8",), steps=2, repeats=1,
                      pipeline_batches=2, variants=("mixed_bfloat16", "float32"))
    try:
        speed.run(plan)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert seen == [("mixed_bfloat16", "mixed_bfloat16"), ("float32", "float32")]


@pytest.mark.parametrize("change,named", [
    ({"models": ("resnet8", "resnet8")}, "models"),
    ({"models": (), "model_paths": ()}, "models"),
    ({"steps": 1}, "steps"),  # 2 x steps_per_execution: the first call is untimed
    ({"num_threads": -1}, "num_threads"),
    ({"peer": ("python", "peer.py"), "peer_modes": ()}, "peer_modes"),
    ({"variants": ("float32", "float32")}, "variants"),
    ({"variants": ("float32+fast",)}, "variants"),
    ({"variants": ("float64",)}, "variants"),
])
def test_a_plan_that_cannot_run_names_the_argument_at_fault(change, named):
    plan = dataclasses.replace(speed.Plan(base=TrainConfig(), models=("resnet8",)), **change)
    with pytest.raises(UserError) as e:
        speed.check_plan(plan)
    assert e.value.argument == named and named in str(e.value)
    assert "--" not in str(e.value)  # a library speaks of arguments, not flags


def test_variants_are_configs_of_the_base_labelled_by_precision_and_xla():
    base = TrainConfig(batch_size=32)
    assert speed.variant_configs(speed.Plan(base=base)) == {"float32": base}
    configs = speed.variant_configs(speed.Plan(base=base,
                                               variants=("mixed_bfloat16", "float32+xla")))
    assert [(c.mixed_precision, c.jit_compile, c.batch_size) for c in configs.values()] == [
        ("mixed_bfloat16", False, 32), ("float32", True, 32)]
    assert list(configs) == ["mixed_bfloat16", "float32+xla"]
