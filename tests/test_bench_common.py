"""The benchmark harness's latency helper: every path measured beside the others, none always first."""

import time

from bench.common import interleaved_latency


def test_paths_are_called_in_turn_with_rotating_order_and_their_own_counts():
    calls: list[str] = []

    def path(name, seconds=0.0):
        def fn():
            calls.append(name)
            if seconds:
                time.sleep(seconds)
        return fn

    out = interleaved_latency({"slow": (path("slow", 0.002), 4), "fast": (path("fast"), 4),
                               "rare": (path("rare"), 1)}, rounds=3)
    assert calls.count("slow") == calls.count("fast") == 3 * (2 + 4) and calls.count("rare") == 3 * (2 + 1)
    timed = [c for i, c in enumerate(calls) if i % 15 >= 6]  # each round: 6 warm-up calls, then 9 timed
    pairs = set(zip(timed, timed[1:], strict=False))
    assert ("slow", "fast") in pairs and ("fast", "slow") in pairs  # neither always runs first
    assert out["slow"]["p50"] >= 0.002 > out["fast"]["p50"]
    assert set(out["rare"]) == {"p50", "p95", "mean"} and out["slow"]["p95"] >= out["slow"]["p50"]


def test_einsum_flops_are_counted():
    """The profiler counts no Einsum by itself; attention and EinsumDense would vanish from the FLOP table."""
    import tensorflow as tf

    from bench.machine import profiled_flops

    fn = tf.function(lambda a, b, c, d, e: (tf.einsum("abc,cd->abd", a, b), tf.einsum("...ij,...jk->...ik", a, c),
                                            tf.einsum("...ij,...jk->...ik", d, e)))
    spec = [tf.TensorSpec([2, 4, 8]), tf.TensorSpec([8, 16]), tf.TensorSpec([8, 3]), tf.TensorSpec([2, 1, 4, 8]),
            tf.TensorSpec([3, 8, 5])]  # ellipses of different ranks, and a broadcast 1
    assert profiled_flops(fn.get_concrete_function(*spec)) == 2 * (2 * 4 * 8 * 16 + 2 * 4 * 8 * 3 + 2 * 3 * 4 * 8 * 5)


def test_recurrent_layers_are_unrolled_before_counting():
    import keras

    from bench.machine import forward_flops
    from suite_plugins.sentiment.byte_tokenizer import unrolled_copy

    inputs = keras.Input((12, 6))
    model = keras.Model(inputs, keras.layers.Bidirectional(keras.layers.LSTM(5))(inputs))
    rolled, unrolled = forward_flops(model) or 0.0, forward_flops(unrolled_copy(model))
    # 12 steps x 2 directions x (input and recurrent matmuls of the 4 gates) at least
    assert unrolled >= 12 * 2 * 2 * (6 + 5) * 4 * 5 > rolled


def test_batch_rate_is_examples_over_the_median_call_after_a_warm_one():
    from bench.common import batch_rate

    calls = []

    def fn():
        time.sleep(0.5 if not calls else 0.01)  # the first call (a trace) is slow and must not count
        calls.append(1)

    rate = batch_rate(fn, 20, rounds=3)
    assert len(calls) == 4 and 20 / 0.05 < rate <= 20 / 0.01


def test_an_app_subsection_is_replaced_in_place_and_the_others_are_kept():
    from bench.app import replace_subsection

    text = "## App\n\nintro\n\n### First contact\n\nold fc\n\n### First paint\n\nold fp\n"
    out = replace_subsection(text, "### First contact", "### First contact\n\nnew fc")
    assert out == "## App\n\nintro\n\n### First paint\n\nold fp\n\n### First contact\n\nnew fc\n"
    assert replace_subsection("## App\n", "### X", "### X\n\nx") == "## App\n\n### X\n\nx\n"
