"""The command line: evaluate (table, JSON), plot (PNG), and usage errors exiting with code 2."""

import json

import numpy as np
import pytest

from sb3_microgrid.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_json_and_prints_table(tmp_path, capsys):
    out = tmp_path / "naive.json"
    assert main(["evaluate", "--controller", "naive", "--days", "2", "--no-reference", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["controller"] == "naive"
    days = result["days"]
    assert len(days) == 2 and all(d["date"].startswith("2024-") for d in days)
    assert result["summary"]["cost_per_day"] == pytest.approx(np.mean([d["cost"] for d in days]))
    assert {"emissions_kg_per_day", "safety_violations"} <= result["summary"].keys()
    table = capsys.readouterr().out
    assert "naive" in table and "cost (Rs/day)" in table and "gap closed" not in table


def test_evaluate_several_controllers_writes_a_list(tmp_path, capsys):
    out = tmp_path / "both.json"
    assert main(["evaluate", "--controller", "naive,optimal", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["controller"] for r in result] == ["naive", "optimal"]
    assert result[1]["summary"]["cost_per_day"] <= result[0]["summary"]["cost_per_day"]
    header = capsys.readouterr().out.splitlines()[1]
    assert "naive" in header and "optimal" in header


def test_unknown_controller_exits_2(capsys):
    assert main(["evaluate", "--controller", "nosuchthing", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert "nosuchthing" in err and len(err.strip().splitlines()) == 1


def test_day_outside_split_exits_2(tmp_path, capsys):
    assert main(["plot", "--controller", "naive", "--day", "2019-06-01", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "2019-06-01" in err and "test" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["plot", "--controller", "naive", "--day", "June 1st", "--out", "x.png"])
    assert exc.value.code == 2


@pytest.mark.parametrize("controllers", [["naive"], ["naive", "optimal"]])
def test_plot_writes_png(tmp_path, controllers):
    out = tmp_path / "day.png"
    argv = ["plot", "--day", "2024-06-01", "--out", str(out)]
    for name in controllers:
        argv += ["--controller", name]
    assert main(argv) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
