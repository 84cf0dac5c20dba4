"""Smoke tests of benchmarks/run.py and benchmarks/gpu.py: the helpers, the rendering, every row at a tiny size.

Speed is measured by the scripts, never asserted here.
"""

import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu as bench_gpu  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402

torch.set_num_threads(1)  # the book's setting
CPU = torch.device("cpu")
KEYS = {"row", "setting", "mldyn_lite", "reference", "reference_name", "verdict", "note"}


def test_compare_names_the_faster_one_and_the_ratio():
    assert bench_run.compare(1.0, 2.0) == "mldyn_lite 2.00× faster"
    assert bench_run.compare(3.0, 1.5, "NN") == "NN 2.00× slower"
    assert bench_run.compare(0.5, 0.5) == "mldyn_lite 1.00× faster"
    with pytest.raises(ValueError, match="positive"):
        bench_run.compare(0.0, 1.0)


def test_compare_takes_the_medians_of_timings():
    fast, slow = bench_run.Timing.of([1.0, 9.0, 1.1], "cpu"), bench_run.Timing.of([2.0, 2.2, 0.1], "cpu")
    assert bench_run.compare(fast, slow) == "mldyn_lite 1.82× faster"  # 2.0 / 1.1, not min or max


def test_measure_warms_up_then_takes_median_min_and_max():
    calls = []

    def fn():
        calls.append(len(calls))
        return len(calls)

    timing, result = bench_run.measure(fn, 3, CPU)
    assert len(calls) == 4 and result == 4  # one warm-up + three timed runs, last result returned
    assert timing.runs == 3 and timing.clock == "cpu" and 0 <= timing.low <= timing.median <= timing.high
    assert bench_run.median_time(fn, 1, CPU) >= 0
    assert str(bench_run.Timing.of([0.5, 0.25, 1.0], "cpu")) == "0.5 [0.25–1]"
    assert str(bench_run.Timing.of([2.0], "cpu")) == "2 (one run)"


def test_measure_pair_interleaves_the_runs():
    order = []
    first, second, _, _ = bench_run.measure_pair(lambda: order.append("a"), lambda: order.append("b"), 4, CPU)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-ups, then A B, B A, A B, B A
    assert first.runs == second.runs == 4


def test_measure_counts_cpu_time_not_waiting():
    timing, _ = bench_run.measure(lambda: time.sleep(0.05), 3, CPU)
    assert timing.high < 0.04  # sleeping (like waiting for a busy core) costs no CPU time


def test_fitted_exponent_recovers_a_power_law():
    sizes = [2, 4, 8, 16]
    assert bench_run.fitted_exponent(sizes, [3.0 * s**1.5 for s in sizes]) == pytest.approx(1.5)


def test_render_writes_the_table_and_keeps_the_gpu_section():
    rows = [bench_run.entry("A row", "a | b", bench_run.Timing.of([0.5, 0.4, 0.6], "cpu"), None, "—", "fine", "note")]
    text = bench_run.render({"sme": rows}, CPU, 3)
    assert "| A row | a \\| b | 0.5 [0.4–0.6] | — | — | fine | note |" in text
    assert "Machine:" in text and "Packages:" in text and "torch" in text and "Load average" in text
    assert bench_run.SCHEMA_LINE in text and bench_run.sections(text)["sme"]["code"] == bench_run.code_digest("sme")
    assert bench_run.GPU_SECTION_START in text and "has not run on a GPU yet" in text
    # a section that gpu.py wrote survives a rewrite of the table, and is replaced, not duplicated
    with_gpu = bench_run.replace_gpu_section(text, "## GPU: Test card\n\nmeasured")
    assert with_gpu.count(bench_run.GPU_SECTION_START) == 1 and "has not run" not in with_gpu
    again = bench_run.render({"flows": rows}, CPU, 3, previous=with_gpu)
    assert "## GPU: Test card" in again and again.count(bench_run.GPU_SECTION_END) == 1
    assert set(bench_run.sections(again)) == {"sme", "flows"}  # the section not rerun is kept
    assert "Quick sizes" in bench_run.render({"sme": rows}, CPU, 1, quick=True)


def test_render_drops_a_section_written_by_other_code():
    rows = [bench_run.entry("A row", "s", None, None, "—", "fine")]
    text = bench_run.render({"sme": rows}, CPU, 3)
    stale = text.replace(bench_run.code_digest("sme"), "0" * 12)
    again = bench_run.render({"flows": rows}, CPU, 3, previous=stale)
    assert "sme" not in bench_run.sections(again) and "Stale: written by other code" in again


def test_results_file_was_written_by_the_current_run_py():
    """benchmarks/RESULTS.md: every section present, full size, written by the current code of its row function."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert bench_run.SCHEMA_LINE in text, "RESULTS.md was written by an older run.py: run python3 benchmarks/run.py"
    assert "Quick sizes" not in text and "Stale:" not in text
    found = bench_run.sections(text)
    assert set(found) == set(bench_run.ROWS), f"sections {sorted(found)}, expected {sorted(bench_run.ROWS)}"
    stale = [
        name
        for name, section in found.items()
        if section["schema"] != bench_run.SCHEMA or section["code"] != bench_run.code_digest(name)
    ]
    assert not stale, f"rerun: python3 benchmarks/run.py --rows {' '.join(stale)}  (their code changed since)"
    for name, section in found.items():  # every time has a median [min–max] of >= 3 runs, or is marked one run
        for cells in re.findall(r"^\| (.+) \|$", section["text"], flags=re.M)[2:]:
            for cell in (cells.split(" | ")[2], cells.split(" | ")[4]):
                assert cell == "—" or re.fullmatch(r"[-0-9.e+]+ (\[[-0-9.e+]+–[-0-9.e+]+\]|\(one run\))", cell), (
                    f"{name}: time cell {cell!r}"
                )


@pytest.mark.parametrize("name", sorted(bench_run.ROWS))
def test_every_row_runs_at_quick_size(name):
    results = bench_run.ROWS[name](CPU, 1, quick=True)
    assert results
    for r in results:
        assert set(r) == KEYS
        assert isinstance(r["verdict"], str) and r["verdict"]
        for key in ("mldyn_lite", "reference"):
            assert r[key] is None or (
                isinstance(r[key], bench_run.Timing) and math.isfinite(r[key].median) and r[key].median > 0
            )


def test_main_quick_writes_only_to_the_given_file(tmp_path):
    output = tmp_path / "RESULTS.md"
    output.write_text(bench_run.replace_gpu_section("# old\n", "## GPU: kept"))
    assert bench_run.main(["--quick", "--rows", "plateaus", "--repeats", "1", "--output", str(output)]) == 0
    text = output.read_text()
    assert "Quick sizes" in text and "Plateaus: escape iterations against memory" in text
    assert "## GPU: kept" in text and "# old" not in text


def test_gpu_script_stops_with_a_clear_message_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert bench_gpu.main(["--dry-run"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_seconds_per_step_subtracts_the_set_up():
    steps_run = []

    def run(n):
        steps_run.append(n)
        return sum(math.sqrt(k) for k in range(2000 * n))

    per_step, n = bench_gpu.seconds_per_step(run, CPU, target_seconds=0.05, max_steps=20)
    assert per_step > 0 and 2 <= n <= 20 and steps_run[0] == 1


@pytest.mark.parametrize("name", sorted(bench_gpu.WORKLOADS))
def test_each_gpu_workload_builds_and_steps_on_cpu(name):
    setting, run = bench_gpu.WORKLOADS[name].build(CPU, True)
    assert isinstance(setting, str) and setting
    run(1)


def test_gpu_dry_run_writes_the_section(tmp_path):
    results, section = tmp_path / "RESULTS.md", tmp_path / "GPU_RESULTS.md"
    threads = torch.get_num_threads()
    code = bench_gpu.main(
        [
            "--dry-run",
            "--device",
            "cpu",
            "--only",
            "sme_weak2",
            "plateau_sweep",
            "--cpu-threads",
            "1",
            "--cpu-seconds",
            "0.02",
            "--gpu-seconds",
            "0.02",
            "--results",
            str(results),
            "--section",
            str(section),
        ]
    )
    assert code == 0 and torch.get_num_threads() == threads  # the check leaves the thread setting as it was
    text = section.read_text()
    assert "## GPU: none (CPU check)" in text and "dry run" in text and "sde_paths" in text and "plateau sweep" in text
    assert bench_run.GPU_SECTION_START in results.read_text()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_sme_simulation_is_the_plain_update_bit_for_bit(dtype):
    """sde_paths and sgd_paths work in place for speed (benchmarks' SME rows); the numbers must not change.

    The plain updates below are what the stored outputs of chapter 2.3 were computed with.
    """
    from mldyn_lite import sme

    problem = sme.toy_problem("logcosh")
    drift, diffusion = problem.sme_drift(0.25, 2), problem.sme_diffusion(0.25)
    x0, T, steps, paths = torch.tensor([2.0, -1.0], dtype=dtype), 1.0, 30, 200
    g, dt = torch.Generator().manual_seed(3), T / steps
    x = x0.expand(paths, -1).clone()
    for _ in range(steps):
        a, b = drift(x), diffusion(x)
        x = x + a * dt + b * (np.sqrt(dt) * torch.randn(x.shape, generator=g, dtype=dtype))
    assert torch.equal(sme.sde_paths(drift, diffusion, x0, T, steps, n_paths=paths, seed=3), x)

    g, theta = torch.Generator().manual_seed(4), x0.expand(paths, -1).clone()
    for _ in range(steps):
        signs = 2.0 * torch.randint(2, theta.shape, generator=g).to(dtype) - 1.0
        theta = theta - 0.1 * 1.0 * torch.tanh(theta - signs)
    assert torch.equal(sme.sgd_paths(problem.stochastic_gradient, x0, 0.1, steps, n_paths=paths, seed=4), theta)
