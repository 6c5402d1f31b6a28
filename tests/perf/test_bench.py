"""The benchmark's harness, sections and report (`odenets.perf`): rounds interleave, ratios are medians, the
JSON keys the tables read stay, and the report prints them. No timings are asserted."""

from __future__ import annotations

import pytest

from odenets.perf import harness, report, sections
from odenets.provenance import cpu_model

TINY = harness.Settings(width=4, image=8, batch=2, rounds=1, overhead_steps=2, input_images=256, input_batches=1,
                        matmul=16, warmup=0, depths=(30,), scaling_depths=(10, 18), input_batch=32)


def test_interleave_rotates_and_ratios_are_medians_of_per_round_ratios():
    calls = []
    t = harness.interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=0)
    assert calls == ["a", "b", "b", "a", "a", "b"] and all(len(v) == 3 for v in t.seconds.values())
    t = harness.Timings({"a": [1.0, 2.0, 10.0], "b": [2.0, 2.0, 2.0]})
    assert t.ratio("a", "b") == 1.0 and t.median("a") == 2.0


def test_a_cpu_is_named_by_the_one_reader_of_its_identity():
    assert harness.Machine().environment(1)["device_name"] == cpu_model() != ""


def test_linear_fit():
    slope, intercept, r2 = sections.linear_fit([10, 20, 30], [1.5, 2.5, 3.5])
    assert (slope, intercept, r2) == pytest.approx((0.1, 0.5, 1.0))


def test_every_section_has_its_benchmark():
    assert set(sections.SECTIONS) == set(sections.BENCHMARKS)


def test_adjoint_section_compares_equal_tolerances_and_saves_less():
    rows = sections.bench_adjoint(harness.Settings(width=4, image=8, batch=2, rounds=1, overhead_steps=1,
                                                   input_images=8, input_batches=1, matmul=8, warmup=0))["rows"]
    assert [(r["method"], r["mode"]) for r in rows] == [(m, g) for m in sections.ADJOINT_METHODS
                                                        for g in ("backprop", "adjoint")]
    for backprop, adjoint in zip(rows[::2], rows[1::2], strict=True):
        assert backprop["tol"] == adjoint["tol"] and backprop["memory_ratio"] == 1.0
        assert adjoint["saved_mib"] < backprop["saved_mib"]  # the adjoint keeps no solver steps for backward
    assert "| dopri5 " in report.format_markdown({"meta": {"torch": "", "device": "cpu", "device_name": "",
                                                           "threads": 1, "clock": "wall", "rounds": 1,
                                                           "quick": True}, "adjoint": {"rows": rows}})


def test_tiny_benchmark_has_the_stable_keys():
    results = sections.run(["overhead", "schemes", "utilisation"], TINY)
    assert {"ratio", "lightning_step_s", "plain_step_s", "env", "target", "ok"} <= set(results["overhead"])
    rows = {row["scheme"]: row for row in results["schemes"]["rows"]}
    assert "skipped" in rows["rk4"] and rows["euler"]["memory_ratio"] == 1.0
    # what the tables read (`reporting.cells.bench_cells`)
    assert {"scheme", "depth", "time_ratio", "memory_ratio", "saved_mib", "peak_mib"} <= set(rows["rk8+checkpoint"])
    assert results["utilisation"]["step_flops"] > 0 and {"device", "torch", "threads"} <= set(results["meta"])
    text = report.format_markdown(results)
    assert "| overhead" in text and "| rk8+checkpoint " in text and "(no such depth)" in text


def test_a_run_keeps_the_sections_it_did_not_measure_and_reports_each_as_it_ends():
    earlier = {"input": {"ratio": 12.0}, "meta": {"quick": True}}
    seen = []
    results = sections.run(["utilisation"], TINY, results=earlier, on_section=lambda r: seen.append(sorted(r)))
    assert results["input"] == {"ratio": 12.0} and results["meta"]["quick"] is False  # TINY is not QUICK
    assert seen == [["input", "meta", "utilisation"]] and "measured" in results["utilisation"]
