"""The benchmark as a library: the task registry, the CLI body, devices, run-folder flags, picklable modules."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import report, study
from benchmark.cromss.__main__ import parse as parse_cromss
from benchmark.finetune import parse as parse_finetune
from benchmark.runs import command, resolve_config, select_device
from benchmark.tasks import IGNORE, TASKS, get_task
from noldo import catalog
from noldo.errors import NoldoError


def test_one_ignore_value_and_task_registry():
    assert IGNORE == catalog.array_kind("dw").nodata == 255
    for task in TASKS.values():
        assert len(task.class_names) == task.num_classes
    osm = get_task("osm")
    stored = np.array([[0, 1], [13, 5]], "uint8")
    labels = osm.decode(stored)
    np.testing.assert_array_equal(labels, [[IGNORE, 0], [12, 4]])
    np.testing.assert_array_equal(osm.legend_values(labels), [[IGNORE, 1], [13, 5]])
    assert get_task("dfc2020").encoder_depth == 3 and get_task("dfc2020").class_names[-1] == "bare"
    with pytest.raises(NoldoError, match="unknown task 'segmentation'; choose one of dw, osm, dfc2020, truth"):
        get_task("segmentation")


def test_command_prints_one_line_and_exits_1(capsys):
    def broken():
        raise NoldoError("first line\nsecond line")

    with pytest.raises(SystemExit) as exit_info:
        command(broken, print)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: first line\n"
    assert command(lambda: {"a": 1}, print) == {"a": 1}


def test_config_errors_are_noldo_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nepoch: 4\n")
    with pytest.raises(NoldoError, match="unknown keys epoch"):
        resolve_config({"epochs": 1}, path, {})
    with pytest.raises(NoldoError, match="cannot read config"):
        resolve_config({"epochs": 1}, tmp_path / "missing.yaml", {})
    assert resolve_config({"epochs": 1, "lr": 0.1}, None, {"epochs": 2, "lr": None}) == {"epochs": 2, "lr": 0.1}
    with pytest.raises(NoldoError, match="no variants"):
        study.study({"store": {}, "pretrain": {}, "finetune": {}}, "data", "run")


def test_cpu_device():
    device = select_device("cpu")
    assert (device.cuda, device.precision, device.deterministic) == (False, "32-true", True)
    assert select_device("cpu", "16-mixed").precision == "16-mixed"


@pytest.mark.parametrize("parse", [parse_cromss, parse_finetune])
def test_run_folder_flag_and_its_hidden_old_name(parse, capsys):
    assert parse(["--data", "d", "--run", "r"]).run == Path("r")
    assert parse(["--data", "d", "--out", "r"]).run == Path("r")
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = capsys.readouterr().out
    assert "--run DIR" in text and "--out" not in text and "--data ROOT" in text


def test_report_markdown_flag_and_its_hidden_old_name(tmp_path, capsys):
    csv = tmp_path / "results.csv"
    pd.DataFrame([{"task": "dw", "modality": "s2", "weights": "random", "mode": "frozen", "seed": 0, "oa": 0.5,
                   "aa": 0.4, "miou": 0.3, "mf1": 0.2}]).to_csv(csv, index=False)
    text = report.main([str(csv), "--markdown", str(tmp_path / "new.md")])
    report.main([str(csv), "--out", str(tmp_path / "old.md")])
    assert (tmp_path / "new.md").read_text() == (tmp_path / "old.md").read_text() == text + "\n"
    with pytest.raises(SystemExit):
        report.main(["--help"])
    assert "--markdown FILE" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--config", str(tmp_path / "none.yaml")])
    assert exit_info.value.code == 1 and "cannot read config" in capsys.readouterr().err


def test_finetune_module_is_picklable():
    from benchmark.finetune_module import FinetuneModule

    module = FinetuneModule("fpn", 2, 9, "resnet18", 5, None, "s1", "frozen", False, 1e-3, 1e-5, 40, 0)
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is FinetuneModule and copy.hparams == module.hparams and copy.frozen
