"""Smoke tests of benchmarks/run.py and benchmarks/gpu.py: the helpers, the rendering, every row at a tiny size.

Speed is measured by the scripts, never asserted here.
"""

import math
import sys
from pathlib import Path

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


def test_measure_warms_up_then_takes_the_median():
    calls = []

    def fn():
        calls.append(len(calls))
        return len(calls)

    seconds, result = bench_run.measure(fn, 3, CPU)
    assert len(calls) == 4 and result == 4  # one warm-up + three timed runs, last result returned
    assert seconds >= 0 and bench_run.median_time(fn, 1, CPU) >= 0


def test_render_writes_the_table_and_keeps_the_gpu_section():
    rows = [bench_run.entry("A row", "a | b", 0.5, None, "—", "fine", "note")]
    text = bench_run.render(rows, CPU, 3)
    assert "| A row | a \\| b | 0.5 | — | — | fine | note |" in text
    assert "Machine:" in text and "Packages:" in text and "torch" in text
    assert bench_run.GPU_SECTION_START in text and "has not run on a GPU yet" in text
    # a section that gpu.py wrote survives a rewrite of the table, and is replaced, not duplicated
    with_gpu = bench_run.replace_gpu_section(text, "## GPU: Test card\n\nmeasured")
    assert with_gpu.count(bench_run.GPU_SECTION_START) == 1 and "has not run" not in with_gpu
    again = bench_run.render(rows, CPU, 3, previous=with_gpu)
    assert "## GPU: Test card" in again and again.count(bench_run.GPU_SECTION_END) == 1
    assert "Quick sizes" in bench_run.render(rows, CPU, 1, quick=True)


@pytest.mark.parametrize("name", sorted(bench_run.ROWS))
def test_every_row_runs_at_quick_size(name):
    results = bench_run.ROWS[name](CPU, 1, quick=True)
    assert results
    for r in results:
        assert set(r) == KEYS
        assert isinstance(r["verdict"], str) and r["verdict"]
        for key in ("mldyn_lite", "reference"):
            assert r[key] is None or (math.isfinite(r[key]) and r[key] > 0)


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
    code = bench_gpu.main(["--dry-run", "--device", "cpu", "--only", "sme_weak2", "plateau_sweep",
                           "--cpu-threads", "1", "--cpu-seconds", "0.02", "--gpu-seconds", "0.02",
                           "--results", str(results), "--section", str(section)])
    assert code == 0 and torch.get_num_threads() == threads  # the check leaves the thread setting as it was
    text = section.read_text()
    assert "## GPU: none (CPU check)" in text and "dry run" in text and "sde_paths" in text and "plateau sweep" in text
    assert bench_run.GPU_SECTION_START in results.read_text()
