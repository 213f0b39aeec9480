"""Rounds through the service: bootstrap, select, answer, close; the regime moves and each
round records its point on the curves. Answers go through the label API here; the Label
Studio path (push, webhooks, sync) has its own integration tests and the simulate test."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from backend.client import ClientError, LocalClient
from backend.settings import Settings


def _split_demo(tiny_demo: Path, out: Path) -> tuple[Path, Path, dict[str, dict]]:
    """A pool folder (the train and val images, unlabelled) and an evaluation folder
    (labels.csv with the test rows), plus the ground truth of the pool by file name."""
    pool, evalset = out / "pool", out / "evalset"
    pool.mkdir(parents=True)
    (evalset / "images").mkdir(parents=True)
    (evalset / "masks").mkdir()
    rows = list(csv.DictReader((tiny_demo / "labels.csv").open()))
    truth, test_rows = {}, []
    for r in rows:
        if r["split"] == "test":
            shutil.copy(tiny_demo / r["file"], evalset / r["file"])
            if r["mask"]:
                shutil.copy(tiny_demo / r["mask"], evalset / r["mask"])
            test_rows.append(r)
        else:
            shutil.copy(tiny_demo / r["file"], pool / Path(r["file"]).name)
            truth[Path(r["file"]).name] = r
    with (evalset / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(test_rows)
    return pool, evalset, truth


@pytest.fixture
def loop(tmp_path: Path, tiny_demo: Path, db_url: str):
    pool, evalset, truth = _split_demo(tiny_demo, tmp_path / "src")
    client = LocalClient(Settings(data_dir=tmp_path / "data", database_url=db_url, device="cpu"))
    pid = client.create_project(
        {
            "name": "line",
            "image_height": 64,
            "image_width": 64,
            "mask_share": 0.5,
            "train_defaults": {"epochs": 3, "bootstrap_refine_fraction": 0.5, "min_defects_supervised": 1},
        }
    )["id"]
    assert client.import_path(pid, pool)["imported"] == 32
    assert client.import_path(pid, evalset)["imported"] == 12
    return client, pid, truth, tiny_demo


def _answer(client: LocalClient, pid: int, asks: list, truth: dict, root: Path) -> None:
    images = {im["id"]: im for im in client.http.get(f"/projects/{pid}/images", params={"limit": 1000}).json()}
    for image_id, kind in asks:
        gt = truth[Path(images[image_id]["uri"]).name]
        files = {}
        if gt["label"] == "1" and kind == "mask":
            files["mask"] = ("m.png", (root / gt["mask"]).read_bytes(), "image/png")
        r = client.http.put(
            f"/projects/{pid}/images/{image_id}/label",
            data={"is_defective": gt["label"] == "1", "lead_time": "4.0"},
            files=files or None,
        )
        assert r.status_code == 200, r.text


def test_rounds_move_from_unsupervised_to_supervised(loop) -> None:
    client, pid, truth, root = loop
    with pytest.raises(ClientError, match="no active model version"):
        client.round_action(pid, "start", {"push": False})
    boot = client.round_action(pid, "bootstrap")
    client.run_job_here(boot["job"]["id"])
    r0 = client.rounds(pid)[0]
    assert r0["status"] == "done" and r0["metrics"]["regime"] == "unsupervised"
    assert r0["metrics"]["labels"]["total"] == 0 and r0["metrics"]["cost"] == 0
    # refined bootstrap: the second model trained on the lower-scoring half of the 32-image pool,
    # less the calibration holdout (no val split in the pool)
    assert 0 < r0["metrics"]["pseudo_normal"] <= 16
    assert "image_auroc" in r0["metrics"]["metrics"]  # evaluated on the fixed test split
    with pytest.raises(ClientError, match="409"):
        client.round_action(pid, "bootstrap")

    r1 = client.round_action(pid, "start", {"budget": 24, "strategy": "top_score", "push": False})
    asks = r1["asks"]
    assert r1["status"] == "annotating" and asks and len({i for i, _ in asks}) == len(asks)
    assert sum(10 if k == "mask" else 1 for _, k in asks) <= 24
    with pytest.raises(ClientError, match="still annotating"):
        client.round_action(pid, "start", {"push": False})
    _answer(client, pid, asks, truth, root)
    close = client.round_action(pid, "close")
    client.run_job_here(close["job"]["id"])
    r1 = client.rounds(pid)[1]
    m = r1["metrics"]
    assert r1["status"] == "done", r1["message"]
    assert m["labels"]["total"] == len(asks)
    assert m["labels"]["image"] + m["labels"]["mask"] > 0, "top_score found no defect in a pool of 10/32"
    assert m["regime"] in ("weak", "mixed", "full")
    assert m["ask"] == "auto" and r0["metrics"]["ask"] is None  # what each round asked for
    assert m["annotation_seconds"] == pytest.approx(4.0 * len(asks))
    assert m["cost"] == m["labels"]["normal"] + m["labels"]["image"] + 10 * m["labels"]["mask"]
    assert m["audit"]["answered"] == len(asks)
    # the lowest-scoring half of the unlabelled pool trained as pseudo-normal beside the answers
    assert m["pseudo_normal"] == (32 - len(asks)) // 2

    # the next round never asks for what is labelled, and closes by itself once answered
    r2 = client.round_action(pid, "start", {"budget": 4, "strategy": "uncertainty", "ask": "verdict", "push": False})
    assert len(r2["asks"]) == 4 and not {i for i, _ in r2["asks"]} & {i for i, _ in asks}
    client.http.patch(f"/projects/{pid}", json={"auto_round_labels": 4})
    _answer(client, pid, r2["asks"][:3], truth, root)
    assert client.rounds(pid)[2]["status"] == "annotating"
    _answer(client, pid, r2["asks"][3:], truth, root)
    r2 = client.rounds(pid)[2]
    assert r2["status"] == "training" and "retraining (job" in r2["message"]


def test_rounds_stay_unsupervised_until_enough_defects_are_labelled(loop) -> None:
    client, pid, truth, root = loop
    r = client.http.patch(f"/projects/{pid}", json={"train_defaults": {"epochs": 3, "min_defects_supervised": 50}})
    assert r.status_code == 200, r.text
    client.run_job_here(client.round_action(pid, "bootstrap")["job"]["id"])
    asks = client.round_action(pid, "start", {"budget": 24, "strategy": "top_score", "push": False})["asks"]
    _answer(client, pid, asks, truth, root)
    client.run_job_here(client.round_action(pid, "close")["job"]["id"])
    r1 = client.rounds(pid)[1]
    m = r1["metrics"]
    assert r1["status"] == "done", r1["message"]
    assert m["labels"]["image"] + m["labels"]["mask"] > 0, "top_score found no defect in a pool of 10/32"
    assert m["regime"] == "unsupervised"  # fewer than 50 labelled defects: the rule kept it unsupervised
    assert "supervised from 50" in r1["message"], r1["message"]
    assert "image_auroc" in m["metrics"]


def test_a_failed_bootstrap_is_run_again(loop) -> None:
    client, pid, _, _ = loop
    first = client.round_action(pid, "bootstrap")
    assert client.http.post(f"/jobs/{first['job']['id']}/cancel").status_code == 200  # cancelled while queued
    r0 = client.rounds(pid)[0]
    assert r0["status"] == "failed" and "cancelled" in r0["message"]
    with pytest.raises(ClientError, match="bootstrap .* failed"):
        client.round_action(pid, "close")
    again = client.round_action(pid, "bootstrap")
    client.run_job_here(again["job"]["id"])
    assert [r["status"] for r in client.rounds(pid)] == ["done"]


@pytest.mark.parametrize("bad", [1.0, -0.1, "half"])
def test_bootstrap_refine_fraction_is_validated(bad) -> None:
    from backend.db.tables import Project
    from backend.services.projects import ProjectSettings, _apply

    with pytest.raises(ValueError, match="train_defaults.bootstrap_refine_fraction"):
        _apply(Project(name="x"), ProjectSettings(train_defaults={"bootstrap_refine_fraction": bad}))


@pytest.mark.parametrize("bad", [-1, 2.5, "many"])
def test_min_defects_supervised_is_validated(bad) -> None:
    from backend.db.tables import Project
    from backend.services.projects import ProjectSettings, _apply

    with pytest.raises(ValueError, match="train_defaults.min_defects_supervised"):
        _apply(Project(name="x"), ProjectSettings(train_defaults={"min_defects_supervised": bad}))


def test_a_staged_run_switches_to_masks_once_image_ap_levels_off(loop) -> None:
    from backend.db.engine import session_factory
    from backend.db.tables import Round, RoundStatus
    from backend.domain.enums import AskPolicy
    from backend.services.rounds import resolve_ask

    client, pid, *_ = loop
    factory = session_factory(client.engine)

    def finish(index: int, image_ap: float | None, ask_used: str, status: RoundStatus = RoundStatus.DONE) -> None:
        with factory.begin() as s:
            s.add(
                Round(
                    project_id=pid,
                    index=index,
                    strategy="hybrid",
                    budget=100,
                    status=status,
                    params={"ask": "staged", "ask_used": ask_used},
                    metrics={"metrics": {} if image_ap is None else {"image_ap": image_ap}},
                )
            )

    def next_ask() -> str:
        with factory() as s:
            return resolve_ask(s, project_id=pid, ask=AskPolicy.STAGED)

    finish(0, 0.60, "verdict")
    assert next_ask() == "verdict"
    finish(1, 0.80, "verdict")
    finish(2, 0.50, "verdict", RoundStatus.FAILED)  # a failed round is no measurement
    assert next_ask() == "verdict"
    finish(3, 0.805, "verdict")
    assert next_ask() == "auto"
    finish(4, 0.90, "auto")  # masks started; a big gain after them does not switch back
    assert next_ask() == "auto"
    with factory() as s:
        assert resolve_ask(s, project_id=pid, ask=AskPolicy.VERDICT) is AskPolicy.VERDICT


def test_the_api_offers_exactly_the_ask_policies_rounds_accept() -> None:
    """StartRound.ask is the AskPolicy the round service resolves, spelled out as an enum in
    the OpenAPI schema."""
    from backend.api.app import create_app
    from backend.domain.enums import AskPolicy

    schema = create_app().openapi()["components"]["schemas"]
    assert schema["AskPolicy"]["enum"] == [p.value for p in AskPolicy]


def test_an_unanswered_round_stays_open_and_a_retraining_round_says_what_to_wait_for(loop) -> None:
    from typer.testing import CliRunner

    from backend.cli import app

    client, pid, _, _ = loop
    client.run_job_here(client.round_action(pid, "bootstrap")["job"]["id"])
    client.round_action(pid, "start", {"budget": 4, "ask": "verdict", "push": False})
    jobs = client.status(pid)["jobs"]
    with pytest.raises(ClientError, match=r"no answers yet.*defectloop round line --close --force"):
        client.round_action(pid, "close")
    assert client.rounds(pid)[1]["status"] == "annotating" and client.status(pid)["jobs"] == jobs  # nothing happened
    job_id = client.round_action(pid, "close", {"force": True})["job"]["id"]
    assert client.rounds(pid)[1]["status"] == "training"
    # while it retrains, starting and closing both say: wait for that job (neither sends the user to the other)
    for action, body in (("start", {"push": False}), ("close", {})):
        with pytest.raises(ClientError) as e:
            client.round_action(pid, action, body)
        msg = str(e.value)
        assert "409" in msg and e.value.job_id == job_id and f"job {job_id}" in msg, msg
        assert "defectloop round line --wait" in msg and "defectloop status line" in msg, msg
        assert "--close" not in msg and "start one" not in msg, msg
    with pytest.raises(ClientError) as e:
        client.retrain(pid)
    assert e.value.job_id == job_id and f"wait for job {job_id}" in str(e.value) and "defectloop status" in str(e.value)
    # and `round --wait` does wait: it follows the running retrain to its end
    env = {
        "DEFECTLOOP_DATA_DIR": str(client.settings.data_dir),
        "DEFECTLOOP_DATABASE_URL": client.settings.database_url,
        "DEFECTLOOP_DEVICE": "cpu",
        "DEFECTLOOP_SERVER_URL": None,
    }
    refused = CliRunner().invoke(app, ["retrain", "line"], env=env)
    assert refused.exit_code == 2 and f"wait for job {job_id}" in refused.output, refused.output
    res = CliRunner().invoke(app, ["round", "line", "--wait"], env=env)
    assert res.exit_code == 0, res.output
    assert f"following job {job_id}" in res.output and "registered" in res.output
    assert [r["status"] for r in client.rounds(pid)] == ["done", "done"]
    shown = CliRunner().invoke(app, ["status", "line"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "round 0: done" in shown.output and "round 1: done, 4 asked (0 masks)" in shown.output, shown.output
