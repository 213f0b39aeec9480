"""The CLI end to end on generated data, every command's --help, and one-line errors."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backend.cli import app

runner = CliRunner()
COMMANDS = [
    "train",
    "evaluate",
    "predict",
    "demo-data",
    "split",
    "db",
    "db upgrade",
    "serve",
    "worker",
    "project",
    "project create",
    "import",
    "retrain",
    "status",
    "labelstudio",
    "labelstudio start",
    "labelstudio stop",
    "labelstudio status",
    "labelstudio setup",
    "labelstudio push",
    "labelstudio sync",
    "labelstudio connect",
    "labelstudio links",
    "round",
    "simulate",
    "demo",
    "assist",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    res = runner.invoke(app, [*command.split(), "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_every_registered_command_is_in_the_help_test() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = set()
    for name, cmd in group.commands.items():
        names.add(name)
        for sub in getattr(cmd, "commands", {}):
            names.add(f"{name} {sub}")
    assert names == set(COMMANDS)


def test_db_upgrade_creates_the_embedded_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    res = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sub" / "x.db").is_file()


def test_console_script_is_installed() -> None:
    res = subprocess.run([sys.executable, "-m", "backend.cli", "--help"], check=False, capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout


def test_train_evaluate_predict_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert runner.invoke(app, ["demo-data", str(data), "--size", "64", "--mask-fraction", "0.5"]).exit_code == 0
    model = tmp_path / "model"
    res = runner.invoke(
        app, ["train", str(data), "--out", str(model), "--image-size", "64", "64", "--epochs", "2", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert "regime mixed" in res.output and (model / "config.json").is_file()
    res = runner.invoke(app, ["evaluate", str(model), str(data), "--json", str(tmp_path / "m.json"), "--quiet"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    keys = {
        "image_auroc",
        "image_ap",
        "image_f1",
        "pixel_auroc",
        "pixel_aupro",
        "pixel_ap",
        "threshold",
        "n_normal",
        "n_defective",
    }
    assert keys <= set(metrics) and metrics["n_normal"] == 40 and metrics["n_defective"] == 20
    assert all(0 <= metrics[k] <= 1 for k in keys - {"threshold", "n_normal", "n_defective"})
    out = tmp_path / "pred"
    res = runner.invoke(app, ["predict", str(model), str(data / "images"), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(list((data / "images").iterdir()))
    assert all(
        r["decision"] in ("ok", "defective") and (out / r["overlay"]).is_file() and (out / r["mask"]).is_file()
        for r in rows
    )


def test_split_command_writes_a_usable_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner.invoke(app, ["demo-data", str(data), "--size", "32"])
    res = runner.invoke(app, ["split", str(data), "--out", str(tmp_path / "s.csv"), "--reassign", "--train-masks", "3"])
    assert res.exit_code == 0, res.output
    assert "3 defective with mask" in res.output


def test_errors_are_one_clear_line_and_nonzero(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        f"error: {tmp_path / 'missing'}: no such file or folder"
    ]
    res = runner.invoke(app, ["evaluate", str(tmp_path), str(tmp_path)])
    assert res.exit_code == 2 and "missing model.safetensors" in res.output
    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--regime", "semi"])
    assert res.exit_code == 2 and "unknown regime 'semi'" in res.output
    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--profile", "turbo"])
    assert res.exit_code == 2 and "--profile" in res.output and "'turbo'" in res.output and "paper" in res.output
    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--backbone", "vgg1"])
    assert res.exit_code == 2 and "unknown backbone" in res.output
    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--verbose"])
    assert res.exit_code == 2 and "Traceback" in res.output


@pytest.mark.parametrize(
    ("args", "seeds"),
    [([], (0, 1, 2)), (["--seeds", "1", "--first-seed", "2"], (2,)), (["--seeds", "2", "--first-seed", "1"], (1, 2))],
)
def test_simulate_runs_the_seeds_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], seeds: tuple[int, ...]
) -> None:
    import simulator

    seen = []

    def fake_simulate(cfg: simulator.SimConfig, say: object) -> dict:
        seen.append(cfg.seeds)
        (cfg.out / "summary.md").write_text("table\n")
        return {"summary": {}}

    monkeypatch.setattr(simulator, "simulate", fake_simulate)
    res = runner.invoke(app, ["simulate", str(tmp_path), "--out", str(tmp_path), *args])
    assert res.exit_code == 0, res.output
    assert seen == [seeds]


def test_assist_writes_masks_and_latency_and_names_bad_rows(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    data = tmp_path / "data"
    assert runner.invoke(app, ["demo-data", str(data), "--size", "64", "--mask-fraction", "0.5"]).exit_code == 0
    model = tmp_path / "model"
    res = runner.invoke(
        app, ["train", str(data), "--out", str(model), "--image-size", "64", "64", "--epochs", "1", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    img = np.full((90, 120, 3), 150, np.uint8)
    cv2.circle(img, (70, 40), 8, (30, 30, 30), -1)
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "spot.png"), img)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    clicks = tmp_path / "clicks.csv"
    clicks.write_text(
        "file,x,y,x2,y2\nimgs/spot.png,70,40,,\nimgs/spot.png,500,40,,\nimgs/missing.png,1,1,,\n"
        "imgs/broken.png,1,1,,\nimgs/spot.png,a,1,,\nimgs/spot.png,55,25,85,55\n"
    )
    out = tmp_path / "assist"
    res = runner.invoke(app, ["assist", str(model), str(clicks), "--out", str(out)])
    assert res.exit_code == 1, res.output  # some rows failed; the others are done
    assert "clicks.csv:3" in res.output and "outside the 120x90 image" in res.output
    assert "clicks.csv:4" in res.output and "clicks.csv:5" in res.output and "clicks.csv:6" in res.output
    report = json.loads((out / "latency.json").read_text())
    assert report["clicks"] == 2 and len(report["errors"]) == 4 and [c["row"] for c in report["per_click"]] == [2, 7]
    assert 0 < report["p50_ms"] <= report["p95_ms"] and all(c["ms"] > 0 for c in report["per_click"])
    mask = cv2.imread(str(out / "spot.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (90, 120) and set(np.unique(mask)) <= {0, 255}
    truth = np.zeros((90, 120), np.uint8)
    cv2.circle(truth, (70, 40), 8, 1, -1)
    got = mask > 0
    assert (got & (truth > 0)).sum() / (got | (truth > 0)).sum() >= 0.7


def test_demo_env_script_puts_defectloop_on_path(tmp_path: Path) -> None:
    """`source out/demo/env.sh` in a shell that never saw the virtual environment: the
    `defectloop` found is this installation's, and the service settings are exported."""
    from backend.cli.demo import _env, write_env_script

    env = _env(tmp_path / "demo it's", tmp_path / "data", 8123, "tok-en")
    script = tmp_path / "env.sh"
    write_env_script(script, env)
    line = (
        f'source "{script}" && command -v defectloop'
        ' && echo "$DEFECTLOOP_SERVER_URL $DEFECTLOOP_DATA_DIR" && defectloop --help'
    )
    res = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", line],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    found, settings = res.stdout.splitlines()[:2]
    assert Path(found) == Path(sys.executable).parent / "defectloop"
    workbench = tmp_path / "demo it's" / "workbench"
    assert settings == f"http://127.0.0.1:8123 {workbench}"
    assert "round" in res.stdout  # the command runs
    assert script.stat().st_mode & 0o077 == 0  # it holds the token


def test_demo_stop_finds_the_sourced_demo_from_any_folder_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    demo = tmp_path / "somewhere" / "demo"
    (demo / "workbench").mkdir(parents=True)
    (demo / "env.sh").write_text("export X=1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(demo / "workbench")}
    ok = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--stop"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0 and "no Label Studio was running" in ok.stdout, ok.stderr
    env.pop("DEFECTLOOP_DATA_DIR")
    wrong = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--stop"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert wrong.returncode == 2 and f"no demo in {elsewhere / 'out' / 'demo'}" in wrong.stderr


def test_a_followed_job_prints_its_stages_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import backend.cli.project as cp

    states = iter(
        [("running", 0.1, "features 3/10")] * 3
        + [("running", 0.5, "train 1/64, loss 0.3")] * 2
        + [("succeeded", 1.0, "done")]
    )

    class Jobs:  # the client's job() seam
        def job(self, _job_id: int) -> dict:
            status, progress, message = next(states)
            return {"status": status, "progress": progress, "message": message, "result": {"model_version_id": 3}}

    monkeypatch.setattr(cp.time, "sleep", lambda _s: None)
    cp.follow(Jobs(), 7)  # pytest's captured stdout is no terminal
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "job 7: 10% features 3/10",
        "job 7: 50% train 1/64, loss 0.3",
        "job 7: 100% done",
        "model version 3 (None) registered",
    ]


def test_every_command_takes_the_one_error_path() -> None:
    from backend.cli.errors import is_guarded

    def callbacks(t: typer.Typer) -> list:
        found = [c.callback for c in t.registered_commands]
        for g in t.registered_groups:
            found += callbacks(g.typer_instance)
        return found

    found = callbacks(app)
    assert len(found) == len([c for c in COMMANDS if c not in ("db", "project", "labelstudio")])
    assert all(is_guarded(cb) for cb in found)


def test_a_service_command_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"DEFECTLOOP_SERVER_URL": "http://127.0.0.1:9", "DEFECTLOOP_DATA_DIR": str(tmp_path)}
    res = runner.invoke(app, ["project", "create", "line-1"], env=env)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot reach the service"), res.output
    res = runner.invoke(app, ["import", "line-1", str(tmp_path)], env=env)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot reach the service"), res.output
    res = runner.invoke(app, ["import", "line-1", str(tmp_path), "--labels", "some"], env=env)
    assert res.exit_code == 2 and "'some' is not one of" in res.output and "'--labels'" in res.output


def test_unexpected_errors_keep_their_traceback_and_a_verbose_one_shows_it(capsys) -> None:
    from backend.cli.errors import command_errors
    from ml.errors import DataError

    def broken(verbose: bool = False) -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        command_errors(broken)()

    def refused(verbose: bool = False) -> None:
        raise DataError("no such file or folder")

    for verbose in (False, True):
        with pytest.raises(typer.Exit) as info:
            command_errors(refused)(verbose=verbose)
        assert info.value.exit_code == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == "error: no such file or folder"
        assert ("Traceback" in err) is verbose


def test_a_followed_job_that_fails_ends_with_status_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import backend.cli.project as cp
    from backend.cli.errors import CommandError

    class Jobs:
        def job(self, _job_id: int) -> dict:
            return {"status": "failed", "progress": 0.5, "message": "failed", "error": "out of memory", "result": {}}

    monkeypatch.setattr(cp.time, "sleep", lambda _s: None)
    with pytest.raises(CommandError) as info:
        cp.follow(Jobs(), 7)
    assert info.value.exit_code == 1 and str(info.value) == "job 7 failed: out of memory"


def test_a_local_import_names_rejected_files_and_run_again_reports_duplicates(tmp_path: Path) -> None:
    """Without a service, `import` runs in this process; the rejected files are named, and a
    second import stores nothing new."""
    import cv2
    import numpy as np

    folder = tmp_path / "line"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    (folder / "broken.png").write_text("not an image")
    env = {"DEFECTLOOP_DATA_DIR": str(tmp_path / "data"), "DEFECTLOOP_SERVER_URL": ""}
    assert runner.invoke(app, ["project", "create", "line-1"], env=env).exit_code == 0
    first = runner.invoke(app, ["import", "line-1", str(folder)], env=env)
    assert first.exit_code == 0, first.output
    assert f"rejected: {folder / 'broken.png'}:" in first.output
    assert first.output.strip().endswith("4 imported, 0 duplicate, 1 rejected")
    again = runner.invoke(app, ["import", "line-1", str(folder)], env=env)
    assert again.exit_code == 0 and again.output.strip().endswith("0 imported, 4 duplicate, 1 rejected"), again.output
    queued = runner.invoke(app, ["import", "line-1", str(folder), "--no-wait"], env=env)
    assert queued.exit_code == 2 and queued.output.strip() == (
        "error: --no-wait needs a service (DEFECTLOOP_SERVER_URL): a local import runs here"
    )
