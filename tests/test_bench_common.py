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
