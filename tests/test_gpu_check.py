"""benchmark.perf.gpu_check --tiny on the CPU: every part of the GPU check runs and its JSON is sane."""

import json
import math

from benchmark.perf import gpu_check


def test_tiny_gpu_check_writes_a_sane_json(synthetic_store, tmp_path, capsys):
    store = synthetic_store(samples=8, tile_size=48)
    gpu_check.main(["--tiny", "--data", str(store), "--json", str(tmp_path / "check.json")])
    result = json.loads((tmp_path / "check.json").read_text())
    assert result["benchmark"] == "gpu_check" and result["settings"]["batch"] == gpu_check.TINY["batch"]
    assert result["device"] and result["peak_memory"] == "process peak RSS"
    assert set(result["recipes"]) == {"ours", "original"}, "torch.compile only with --compile"
    ours, original = result["recipes"]["ours"], result["recipes"]["original"]
    assert (ours["autocast"], ours["channels_last"], ours["grad_scaler"]) == ("bfloat16", True, False)
    assert (original["autocast"], original["channels_last"], original["grad_scaler"]) == ("float16", False, True)
    for recipe in (ours, original):
        assert recipe["loss_finite"] and recipe["samples_per_s"] > 0 and recipe["peak_memory_mb"] > 100
        assert math.isclose(recipe["samples_per_s"], recipe["steps_per_s"] * gpu_check.TINY["batch"])
    assert set(result["loader_samples_per_s"]) == {"device", "item"}
    for name, rate in result["loader_samples_per_s"].items():
        assert rate > 0 and math.isclose(result["loader_vs_step"][name], rate / ours["samples_per_s"])
    assert "| ours |" in capsys.readouterr().out
