"""The time-budget planner (suite/budget.py) and the image plugin's plan (plan.py): pure decisions, tested
on data statistics and machine speeds given as numbers."""

from __future__ import annotations

import pytest

from suite.budget import Candidate, TrainingPlan, choose_by_budget, seconds_per_epoch, target_epochs_for
from suite.strategy import Hardware, choose_precision, cpu_has_bf16
from suite_plugins.image_classification.plan import AUTO_BUDGET_MINUTES, plan_image
from suite_plugins.image_classification.task import ImageClassificationConfig

SMALL, MID, BIG = (Candidate("small", {"width": 1}, 1e6), Candidate("mid", {"width": 2}, 4e6),
                   Candidate("big", {"width": 3}, 16e6))
CIFAR = {"channels": 3, "image_size": 32, "class_names": [str(i) for i in range(10)], "native_sizes": 1}
MNIST = {"channels": 1, "image_size": 28, "class_names": [str(i) for i in range(10)], "native_sizes": 1}
PHOTOS = {"channels": 3, "image_size": 128, "class_names": list("abcde"), "native_sizes": 900}


def test_seconds_per_epoch_scales_with_examples_cost_and_efficiency():
    assert seconds_per_epoch(MID, 1000, 1e9) == pytest.approx(4.0)
    assert seconds_per_epoch(Candidate("m", {}, 4e6, efficiency=0.5), 1000, 1e9, overhead_s=1) == pytest.approx(9.0)


def test_choose_takes_the_largest_candidate_that_gets_its_target_epochs():
    # 1000 examples at 1 GFLOP/s: small 1 s/epoch, mid 4 s, big 16 s; 10 epochs in 60 s -> mid (40 s), not big.
    choice = choose_by_budget([SMALL, MID, BIG], n_train=1000, budget_s=60, flops_per_s=1e9, target_epochs=10,
                              max_epochs=100)
    assert choice.candidate is MID
    assert choice.epochs == 15  # what is left of the budget goes into epochs
    assert choice.expected_seconds <= 60
    assert any("big would get only 3.8" in r for r in choice.reasons)


def test_choose_grows_the_model_with_the_budget_and_shrinks_it_with_the_data():
    kwargs = dict(flops_per_s=1e9, target_epochs=10, max_epochs=100)
    assert choose_by_budget([SMALL, MID, BIG], n_train=1000, budget_s=200, **kwargs).candidate is BIG
    assert choose_by_budget([SMALL, MID, BIG], n_train=1000, budget_s=20, **kwargs).candidate is SMALL
    assert choose_by_budget([SMALL, MID, BIG], n_train=250, budget_s=60, **kwargs).candidate is BIG


def test_choose_falls_back_to_the_cheapest_and_says_the_budget_stops_it():
    choice = choose_by_budget([SMALL, MID], n_train=1000, budget_s=1.5, flops_per_s=1e9, target_epochs=10,
                              max_epochs=100, min_epochs=2)
    assert choice.candidate is SMALL and choice.epochs == 2
    assert any("budget stops it early" in r for r in choice.reasons)


def test_choose_caps_epochs_and_rejects_nonsense():
    choice = choose_by_budget([SMALL], n_train=10, budget_s=1e6, flops_per_s=1e9, target_epochs=10, max_epochs=20)
    assert choice.epochs == 20
    with pytest.raises(ValueError):
        choose_by_budget([], n_train=10, budget_s=1, flops_per_s=1, target_epochs=1, max_epochs=1)
    with pytest.raises(ValueError):
        choose_by_budget([SMALL], n_train=0, budget_s=1, flops_per_s=1, target_epochs=1, max_epochs=1)


def test_target_epochs_grow_as_the_data_shrink():
    assert target_epochs_for(50_000) == 16
    assert target_epochs_for(200_000) == 12  # clipped low
    assert 50 <= target_epochs_for(4_000) <= 60
    assert target_epochs_for(10) == 100  # clipped high


def test_training_plan_round_trips_through_a_dict():
    plan = TrainingPlan({"width": 32}, {"image_size": 64}, ("why",), cpu_bfloat16=True)
    assert TrainingPlan.from_dict(plan.to_dict()) == plan


def test_cpu_bf16_comes_from_the_cpu_flags():
    assert cpu_has_bf16("flags\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16("flags\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_bf16("flags\t: fpu avx2 avx512f\n")
    assert not cpu_has_bf16("")


def test_precision_is_bfloat16_on_a_bf16_cpu_only_for_models_that_ask():
    bf16_cpu = Hardware(cpu_bf16=True)
    assert choose_precision("auto", bf16_cpu, cpu_bfloat16_model=True).policy == "mixed_bfloat16"
    assert choose_precision("auto", bf16_cpu).policy == "float32"
    assert choose_precision("auto", Hardware(), cpu_bfloat16_model=True).policy == "float32"
    assert choose_precision("float32", bf16_cpu, cpu_bfloat16_model=True).policy == "float32"


def _plan(meta, n, explicit=(), flops=200e9, **config):
    return plan_image(ImageClassificationConfig(**config), meta, n, frozenset(explicit), flops_per_s=flops)


def test_grey_glyphs_keep_cnn_base():
    plan = _plan(MNIST, 54_000)
    assert plan.values == {"model": "cnn_base"} and not plan.cpu_bfloat16


def test_colour_photos_get_cnn_fast_sized_to_the_auto_budget():
    plan = _plan(CIFAR, 45_000)
    v = plan.values
    assert v["model"] == "cnn_fast" and v["optimizer"] == "sgd" and v["image_size"] == 32
    assert v["time_budget_minutes"] == AUTO_BUDGET_MINUTES
    assert plan.cpu_bfloat16 and plan.meta["augmentation"]["flip"] == "horizontal"
    assert any("largest model" in r for r in plan.reasons)


def test_a_bigger_budget_or_a_faster_machine_buys_a_wider_model():
    small = _plan(CIFAR, 45_000, ["time_budget_minutes"], time_budget_minutes=2)
    large = _plan(CIFAR, 45_000, ["time_budget_minutes"], time_budget_minutes=20)
    fast = _plan(CIFAR, 45_000, ["time_budget_minutes"], flops=2000e9, time_budget_minutes=2)
    assert small.values["width"] < large.values["width"]
    assert small.values["width"] < fast.values["width"]
    assert "time_budget_minutes" not in large.values  # the user's budget stays the user's


def test_explicit_settings_are_kept():
    plan = _plan(CIFAR, 45_000, ["width", "flip", "model"], width=16, flip="none", model="cnn_fast")
    assert plan.values["width"] == 16
    assert plan.meta["augmentation"]["flip"] == "none"
    other = _plan(CIFAR, 45_000, ["model"], model="cnn_small")
    assert other.values == {}


def test_photos_of_varying_size_get_an_input_size_and_resized_crops():
    plan = _plan(PHOTOS, 3_000)
    assert plan.values["image_size"] in (64, 96, 128)
    assert plan.meta["image_size"] == plan.values["image_size"]
    assert plan.meta["augmentation"]["crop_scale"] > 0
    assert plan.values["epochs"] >= target_epochs_for(3_000) // 2


def test_warmup_follows_the_epochs_that_will_run_even_when_set_by_hand():
    config = ImageClassificationConfig(epochs=1)
    plan = plan_image(config, CIFAR, 45_000, frozenset({"epochs"}), flops_per_s=2e11)
    assert plan.values["warmup_epochs"] <= 0.3  # not the planned run's 3 epochs of warm-up in a 1-epoch run
    long = plan_image(ImageClassificationConfig(), CIFAR, 45_000, frozenset(), flops_per_s=2e11)
    assert long.values["warmup_epochs"] == round(0.15 * long.values["epochs"], 1)


def test_the_model_probe_times_real_training_steps_and_restores_the_dtype_policy():
    import keras

    from suite.budget import measure_train_flops_per_s

    def features(x):
        return keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(x))

    before = keras.config.dtype_policy().name
    flops = 2 * 3 * (6 * 6 * 9 * 3 * 8)  # forward and backward of the 8x8x3 -> 6x6x8 convolution
    speed = measure_train_flops_per_s(features, (8, 8, 3), flops, classes=3, batch=8, seconds=0.05,
                                      policy="mixed_bfloat16")
    assert 1e3 < speed < 1e14  # FLOP/s of a few steps: a real rate, not steps or seconds
    assert keras.config.dtype_policy().name == before


def test_the_speed_probe_trains_at_the_middle_of_the_sides_the_plan_may_pick():
    from suite_plugins.image_classification.plan import input_sides, probe_size

    assert input_sides(CIFAR) == (32,) and probe_size(CIFAR) == 32
    assert input_sides({**PHOTOS, "median_side": 300}) == (64, 96, 128) and probe_size({**PHOTOS, "median_side": 300}) == 96
    assert probe_size({**PHOTOS, "median_side": 80}) == 64  # no side larger than the photos themselves


def test_a_faster_measured_speed_buys_a_larger_model_or_more_epochs_never_less():
    slow, fast = _plan(CIFAR, 45_000, flops=200e9), _plan(CIFAR, 45_000, flops=350e9)
    cost = {w: w * w for w in (16, 24, 32, 40, 48, 64)}
    assert (cost[fast.values["width"]] * fast.values["epochs"]) > (cost[slow.values["width"]] * slow.values["epochs"])
