"""The typed domain: project settings, round parameters and job payloads validate once, travel
typed, and are stored as the same JSON as before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text

from backend.db.engine import session_factory
from backend.db.tables import Job, JobKind, Project, Round
from backend.domain.enums import AskKind, AskPolicy, ProfileName, Regime
from backend.domain.jobs import PredictPayload, TrainPayload
from backend.domain.project_settings import DEFAULT_SETTINGS, ProjectSettings, TrainDefaults
from backend.domain.rounds import RoundParams
from backend.jobs.queue import enqueue


def test_round_params_are_typed_when_read_and_plain_json_when_stored(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        params = RoundParams(seed=3, ask=AskPolicy.STAGED, ask_used=AskPolicy.AUTO, asks=((7, AskKind.MASK),))
        s.add(Round(project_id=project.id, index=1, strategy="hybrid", budget=10, params=params))
    with migrated.connect() as c:
        raw = c.execute(text("SELECT params FROM round")).scalar_one()
    assert '"asks": [[7, "mask"]]' in raw if isinstance(raw, str) else raw["asks"] == [[7, "mask"]]
    with sessions() as s:
        rnd = s.query(Round).one()
        assert isinstance(rnd.params, RoundParams)
        assert rnd.params.asks == ((7, AskKind.MASK),) and rnd.params.ask is AskPolicy.STAGED
        assert rnd.params.policy() is AskPolicy.AUTO and rnd.params.job_id is None


def test_a_round_param_that_does_not_exist_fails_the_write(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with pytest.raises(Exception, match="nonsense"), sessions.begin() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        s.add(Round(project_id=project.id, index=1, strategy="hybrid", budget=10, params={"nonsense": 1}))
    with sessions() as s:
        assert s.query(Round).count() == 0


def test_job_payloads_store_only_what_is_set(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        job = enqueue(
            s,
            kind=JobKind.TRAIN,
            project_id=project.id,
            payload=TrainPayload(label_ids=(1, 2), regime=Regime.UNSUPERVISED, seed=4),
        )
        job_id = job.id
    with sessions() as s:
        stored = s.get_one(Job, job_id).payload
    assert stored == {"label_ids": [1, 2], "regime": "unsupervised", "seed": 4}
    back = TrainPayload.model_validate(stored)
    assert back.regime is Regime.UNSUPERVISED and back.label_ids == (1, 2) and back.round_id is None
    with pytest.raises(ValidationError, match="image_idz"):
        PredictPayload.model_validate({"image_idz": [1]})


def test_project_settings_validate_once_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="train_defaults.bootstrap_refine_fraction"):
        ProjectSettings(train_defaults={"bootstrap_refine_fraction": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="train_defaults.epochs"):
        ProjectSettings(train_defaults={"epochs": True})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="train_defaults.unknown"):
        ProjectSettings(train_defaults={"unknown": 1})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="profile"):
        ProjectSettings(profile="slow")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="strategy"):
        ProjectSettings(strategy="psychic")
    with pytest.raises(ValidationError, match="train_defaults.calibration"):
        ProjectSettings(train_defaults={"calibration": "folds"})  # type: ignore[arg-type]
    assert TrainDefaults(calibration="holdout").model_dump(mode="json") == {  # type: ignore[arg-type]
        **TrainDefaults().model_dump(mode="json"),
        "calibration": "holdout",
    }
    ok = ProjectSettings(profile="paper", train_defaults={"min_defects_supervised": 0})  # type: ignore[arg-type]
    assert ok.profile is ProfileName.PAPER and ok.train_defaults == TrainDefaults(min_defects_supervised=0)
    assert set(ok.given()) == {"profile", "train_defaults"}


def test_a_new_project_takes_the_one_schema_defaults(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        s.add(Project(name="p"))
    with sessions() as s:
        p = s.query(Project).one()
        for name in ProjectSettings.model_fields:
            if name != "auto_round_labels":
                assert getattr(p, name) == getattr(DEFAULT_SETTINGS, name), name
        assert isinstance(p.train_defaults, TrainDefaults) and p.profile is ProfileName.FAST


def test_a_round_written_with_a_retired_key_still_loads(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        s.add(Round(project_id=project.id, index=0, strategy="bootstrap", budget=0, params=RoundParams(seed=1)))
    with migrated.begin() as c:
        c.execute(text("""UPDATE round SET params = '{"seed": 1, "retired": true}'"""))
    with sessions() as s:
        assert s.query(Round).one().params == RoundParams(seed=1)
