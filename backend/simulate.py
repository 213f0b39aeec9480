"""The whole loop, unattended: a simulated annotator answers through Label Studio.

Given a fully labelled dataset, each (strategy, seed) run is a project of its own: the
dataset's test split is imported with its labels (the fixed evaluation set), every other
image goes into the pool unlabelled. Then the real loop runs: bootstrap, and per round the
service selects and pushes a batch to a real Label Studio, the simulated annotator answers
each open task there from the ground truth (verdict only or with a mask, as the task asks,
with an optional error rate and a lead time), Label Studio's webhooks bring the answers in,
closing the round syncs and retrains. A full-supervision model trained on the same pool
with every label is the reference that the summary measures strategies against.

Runs are written round by round (``runs/<strategy>-seed<k>/rounds.json``, beside the study's
own service database and Label Studio). Running the same command again repeats nothing: a
finished run is reused, an interrupted one goes on from its last recorded round (a round
caught while annotating or retraining is finished, a retrain the dead process left running is
run again), and asking for more ``--rounds`` extends finished runs instead of starting over.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from backend.curves import X_AXES, Run, curves_json, plot, summary_markdown
from ml.data import Dataset, Sample, SplitPlan, assign_splits, load_dataset
from ml.errors import DataError

Say = Callable[[str], None]


class SimulationError(RuntimeError):
    """The simulation cannot go on; the message says where and why."""


@dataclass(frozen=True)
class AnnotatorModel:
    """How the simulated annotator behaves.

    ``error_rate``: probability of giving the wrong verdict (a wrong Defect comes without a
    mask; a wrong OK drops the mask). Lead times are seconds per verdict and per painted
    mask, jittered (lognormal, sigma 0.25) per answer.
    """

    error_rate: float = 0.0
    verdict_seconds: float = 4.0
    mask_seconds: float = 40.0


class SimulatedAnnotator:
    """Answers a task from the ground truth of the image it shows (seeded)."""

    def __init__(self, truth: dict[int, Sample], model: AnnotatorModel, seed: int) -> None:
        if not 0.0 <= model.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {model.error_rate}")
        self.truth, self.model, self.seed = truth, model, seed
        self.rng = np.random.default_rng(seed)
        self.mistakes = 0

    def begin_round(self, index: int) -> None:
        """Draw round ``index``'s mistakes and lead times from a stream of their own, so a
        resumed run answers its later rounds as an uninterrupted one would."""
        self.rng = np.random.default_rng((self.seed, index))

    def answer(self, data: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
        """The annotation result for a task's ``data`` and the seconds it took."""
        from labelstudio.conversions import brush_result, choice_result, validate_result
        from ml.images import read_mask

        image_id = data.get("defectloop_image_id")
        if image_id not in self.truth:
            raise SimulationError(f"task shows image {image_id!r}, which has no ground truth in this simulation")
        s = self.truth[image_id]
        truth = s.label == 1
        verdict = truth
        if self.rng.random() < self.model.error_rate:
            verdict, self.mistakes = not truth, self.mistakes + 1
        result = [choice_result(verdict)]
        seconds = self.model.verdict_seconds
        if data.get("ask") == "mask" and verdict:
            seconds = self.model.mask_seconds
            if truth and s.pixels_known and s.mask is not None:
                mask = read_mask(s.mask)
                if mask.any():
                    result.append(brush_result(mask))
        validate_result(result)
        return result, float(seconds * self.rng.lognormal(0.0, 0.25))


@dataclass(frozen=True)
class SimConfig:
    """One study: strategies x seeds runs of ``rounds`` rounds of ``budget`` cost units."""

    data: Path
    out: Path
    strategies: tuple[str, ...] = ("random", "hybrid")
    rounds: int = 4
    budget: float = 30.0
    seeds: tuple[int, ...] = (0,)
    ask: str = "auto"
    mask_share: float = 0.5
    cost_image: float = 1.0
    cost_mask: float = 10.0
    mask_cost: str = "edit"  # the projects' mask cost model (backend.db.tables.MaskCostModel)
    annotator: AnnotatorModel = field(default_factory=AnnotatorModel)
    image_size: tuple[int, int] = (256, 256)
    backbone: str | None = None
    epochs: int | None = None
    test_fraction: float = 0.3
    pseudo_normal_fraction: float | None = None  # None: the project default
    min_defects_supervised: int | None = None  # None: the project default
    reference: bool = True
    device: str = "auto"

    def to_json(self) -> dict[str, Any]:
        """The config as JSON; ``data`` is absolute, so a study named from another directory
        or by a relative path keys the same runs and reference."""
        d = asdict(self)
        d["data"], d["out"] = str(Path(self.data).resolve()), str(self.out)
        return d

    def run_key(self) -> dict[str, Any]:
        """What makes a recorded run reusable: everything but the list of strategies and seeds
        and the number of rounds (a run with fewer rounds is extended, one with more is read up
        to ``rounds``)."""
        return _key(self.to_json())

    def reference_key(self) -> dict[str, Any]:
        """What the full-supervision reference depends on: the data, its test split and the
        training settings, not the loop's (strategies, budgets, costs, the annotator)."""
        d = self.to_json()
        return {k: d[k] for k in ("data", "test_fraction", "image_size", "backbone", "epochs")}


def _key(config: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(json.dumps(config))  # as it reads back from rounds.json
    for k in ("out", "strategies", "seeds", "reference", "device", "rounds"):
        d.pop(k, None)
    return d


# ---- the data ------------------------------------------------------------------------------
def prepare_data(cfg: SimConfig) -> tuple[Dataset, list[Sample], list[Sample]]:
    """The dataset with a test split (seeded 0 and stratified when it has none), the pool
    samples (everything not test) and the test samples."""
    ds = load_dataset(cfg.data)
    if not any(s.split == "test" for s in ds.samples):
        ds = assign_splits(
            ds, SplitPlan(seed=0, val_fraction=0.0, test_fraction=cfg.test_fraction, keep_existing=False)
        )
    test = [s for s in ds.samples if s.split == "test"]
    pool = [s for s in ds.samples if s.split != "test"]
    problems = []
    if not test or len({s.label for s in test}) < 2:
        problems.append("the test split needs normal and defective images")
    if not pool:
        problems.append("no images left for the pool")
    if not any(s.label == 1 for s in pool):
        problems.append("the pool holds no defective image: there is nothing for annotators to find")
    if problems:
        raise DataError(f"{ds.root}: " + "; ".join(problems))
    return ds, pool, test


def files_root(ds: Dataset) -> Path:
    """The deepest folder holding every image and mask of ``ds``: what the private service
    imports from and Label Studio serves. A labels CSV may name files outside its own
    folder (a split written elsewhere), so its folder is not enough."""
    files = [p.resolve() for s in ds.samples for p in (s.image, s.mask) if p is not None]
    if not files:
        return ds.root.resolve()
    common = Path(os.path.commonpath(files))
    return common.parent if common in files else common


# ---- the services --------------------------------------------------------------------------
@dataclass
class Environment:
    """A private defectloop service (SQLite, jobs run here) and the Label Studio it talks to."""

    settings: Any
    engine: Any
    sessions: Any
    client: Any
    studio: Any
    read_sessions: Any = None

    def __post_init__(self) -> None:
        from backend.db.engine import read_session_factory

        self.read_sessions = read_session_factory(self.engine)


@contextmanager
def environment(cfg: SimConfig, data_root: Path, say: Say) -> Iterator[Environment]:
    """Start (or connect to) Label Studio and serve the API on a free port until the block ends.

    A Label Studio configured with DEFECTLOOP_LABELSTUDIO_URL/TOKEN is used as is; otherwise
    one is started for the study under ``out/labelstudio`` and stopped afterwards.
    """
    from backend.api.app import create_app
    from backend.api.threaded import ThreadedServer
    from backend.client import HttpClient
    from backend.db.engine import make_engine, session_factory
    from backend.db.migrate import upgrade
    from backend.services.labelstudio_link import start_local, studio
    from backend.settings import Settings
    from labelstudio import server

    base = Settings()
    home = (cfg.out / "labelstudio").resolve()
    started = False
    if base.labelstudio_url:
        ls_url, ls_token, doc_root = base.labelstudio_url, base.labelstudio_token, base.labelstudio_document_root
    else:
        info = start_local(base, home, document_root=data_root, say=say)
        ls_url, ls_token, doc_root, started = info.url, server.load_credentials(home).token, data_root, True
    port = server.free_port()
    token = secrets.token_urlsafe(24)
    settings = Settings(
        data_dir=(cfg.out / "service").resolve(),
        database_url=f"sqlite:///{(cfg.out / 'service' / 'defectloop.db').resolve()}",
        api_token=token,
        import_roots=[data_root],
        labelstudio_url=ls_url,
        labelstudio_token=ls_token,
        labelstudio_document_root=doc_root,
        public_url=f"http://127.0.0.1:{port}",
        device=cfg.device,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    api = ThreadedServer(create_app(settings, engine=engine), port).start()
    try:
        yield Environment(settings, engine, session_factory(engine), HttpClient(api.url, token), studio(settings))
    finally:
        api.stop()
        engine.dispose()
        if started:
            server.stop(home)


# ---- one run ---------------------------------------------------------------------------------
def _run_dir(cfg: SimConfig, strategy: str, seed: int) -> Path:
    return cfg.out / "runs" / f"{strategy}-seed{seed}"


def recorded_run(cfg: SimConfig, strategy: str, seed: int) -> dict[str, Any] | None:
    """The run recorded with this study's settings (any number of rounds), else None."""
    path = _run_dir(cfg, strategy, seed) / "rounds.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and _key(rec.get("config") or {}) == cfg.run_key() else None


def finished_run(cfg: SimConfig, strategy: str, seed: int) -> dict[str, Any] | None:
    """The recorded run when it holds the bootstrap and ``cfg.rounds`` rounds (cut to those), else None."""
    rec = recorded_run(cfg, strategy, seed)
    if rec is None or len(rec.get("rounds", [])) < cfg.rounds + 1:
        return None
    return {**rec, "rounds": rec["rounds"][: cfg.rounds + 1]}


def _wait_for_labels(env: Environment, project_id: int, image_ids: list[int], timeout_s: float = 60.0) -> int:
    """Wait until the webhooks delivered labels for ``image_ids``; how many arrived."""
    from backend.services.labels import current_labels

    deadline = time.monotonic() + timeout_s
    while True:
        with env.read_sessions() as s:
            n = len(current_labels(s, project_id=project_id, image_ids=image_ids))
        if n >= len(image_ids) or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def _run_job(env: Environment, job_id: int, what: str) -> None:
    from backend.db.tables import Job, JobStatus
    from backend.handlers import job_handlers
    from backend.jobs.runner import run_here

    run_here(job_id, env.sessions, env.settings, job_handlers())
    with env.read_sessions() as s:
        job = s.get(Job, job_id)
        if job.status is not JobStatus.SUCCEEDED:
            raise SimulationError(f"{what}: job {job_id} {job.status.value}: {job.message}\n{job.error or ''}")


def _new_project(
    env: Environment,
    cfg: SimConfig,
    strategy: str,
    name: str,
    pool: Sequence[Sample],
    test: Sequence[Sample],
) -> int:
    """Create the run's project: the test split imported with its labels, the pool without."""
    from backend.db.tables import Project
    from backend.services.images import import_samples

    body = {
        "name": f"{name}-{secrets.token_hex(3)}",
        "image_height": cfg.image_size[0],
        "image_width": cfg.image_size[1],
        "strategy": strategy,
        "round_budget": cfg.budget,
        "mask_share": cfg.mask_share,
        "cost_image_label": cfg.cost_image,
        "cost_mask_label": cfg.cost_mask,
        "mask_cost_model": cfg.mask_cost,
        "train_defaults": {
            **({"epochs": cfg.epochs} if cfg.epochs else {}),
            **(
                {"pseudo_normal_fraction": cfg.pseudo_normal_fraction} if cfg.pseudo_normal_fraction is not None else {}
            ),
            **(
                {"min_defects_supervised": cfg.min_defects_supervised} if cfg.min_defects_supervised is not None else {}
            ),
        },
        **({"backbone": cfg.backbone} if cfg.backbone else {}),
    }
    pid = int(env.client.create_project(body)["id"])
    with env.sessions.begin() as s:
        project = s.get(Project, pid)
        for samples, with_labels in ((test, True), (pool, False)):
            results = import_samples(
                s, project=project, samples=samples, roots=env.settings.import_roots, with_labels=with_labels
            )
            bad = [f"{r.file}: {r.status} ({r.reason})" for r in results if r.status != "imported"]
            if bad:
                raise SimulationError(f"{len(bad)} images could not be imported, e.g. " + "; ".join(bad[:3]))
    return pid


def _truth(env: Environment, project_id: int, pool: Sequence[Sample]) -> dict[int, Sample]:
    """The ground truth of each pool image of the project, by image id."""
    from sqlalchemy import select

    from backend.db.tables import Image, Split

    by_file = {str(s.image): s for s in pool}
    with env.read_sessions() as s:
        rows = s.execute(
            select(Image.id, Image.uri).where(Image.project_id == project_id, Image.split == Split.POOL)
        ).all()
    missing = [uri for _, uri in rows if uri not in by_file]
    if missing or len(rows) != len(pool):
        raise SimulationError(
            f"project {project_id}'s pool ({len(rows)} images) is not this dataset's pool ({len(pool)}), "
            f"e.g. {missing[:1]}: use a new --out"
        )
    return {int(i): by_file[uri] for i, uri in rows}


def _recover(env: Environment, project_id: int) -> None:
    """Make a project left by a dead process consistent. Its running jobs fail (nobody runs
    them any more: a study's jobs run in the study's process), so their round can be closed
    again; a pool scoring that failed so is queued again; then the queued jobs run. Label
    Studio's webhook is pointed at this process's service."""
    from sqlalchemy import select

    from backend.db.tables import Job, JobKind, JobStatus, Project
    from backend.jobs.queue import reap_stale
    from backend.services.labelstudio_link import setup_project
    from backend.services.model_versions import active_model_version
    from backend.services.retrain import enqueue_pool_scoring

    with env.sessions.begin() as s:
        reaped = [s.get(Job, j) for j in reap_stale(s, timeout_s=-1.0)]
        mv = active_model_version(s, project_id)
        if mv is not None and any(j.kind is JobKind.PREDICT and j.project_id == project_id for j in reaped):
            enqueue_pool_scoring(s, project_id=project_id, model_version_id=mv.id)
        queued = list(
            s.scalars(
                select(Job.id).where(Job.project_id == project_id, Job.status == JobStatus.QUEUED).order_by(Job.id)
            )
        )
    for job_id in queued:
        _run_job(env, job_id, f"project {project_id}'s queued job")
    with env.sessions.begin() as s:
        project = s.get(Project, project_id)
        if project.ls_project_id is not None:  # answers now reach this process's service (on a new port)
            setup_project(s, env.settings, project, env.studio)


def run_one(
    env: Environment,
    cfg: SimConfig,
    strategy: str,
    seed: int,
    pool: Sequence[Sample],
    test: Sequence[Sample],
    say: Say,
    step: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Bootstrap and ``cfg.rounds`` rounds of ``strategy`` in a project of its own; the run's
    record. A run recorded with the same settings goes on in its project from where it stopped."""
    from backend.client import ClientError

    name = f"{strategy}-seed{seed}"
    run_dir = _run_dir(cfg, strategy, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = recorded_run(cfg, strategy, seed)
    if record is not None:
        pid = int(record["project_id"])
        try:
            env.client.find_project(str(pid))
        except ClientError as e:  # the record outlived its database
            raise SimulationError(
                f"{run_dir / 'rounds.json'} names project {pid}, which this study's service does not "
                f"hold ({e}): remove {run_dir} to run {name} again"
            ) from None
        truth = _truth(env, pid, pool)
        _recover(env, pid)
    else:
        pid = _new_project(env, cfg, strategy, name, pool, test)
        truth = _truth(env, pid, pool)
        record = {
            "strategy": strategy,
            "seed": seed,
            "project_id": pid,
            "rounds": [],
            "webhooks": [],
            "annotator_mistakes": 0,
        }
    record.update(config=cfg.run_key(), complete=False)
    annotator = SimulatedAnnotator(truth, cfg.annotator, seed=seed)

    def save() -> None:
        record["rounds"] = [r for r in env.client.rounds(pid) if r["status"] == "done"]
        tmp = run_dir / "rounds.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(run_dir / "rounds.json")

    save()
    done = len(record["rounds"])
    for _ in range(min(done, cfg.rounds + 1)):
        step()
    if done:
        say(f"{name}: going on after round {done - 1}")
    else:
        t0 = time.monotonic()
        boot = env.client.round_action(pid, f"bootstrap?seed={seed}")
        _run_job(env, boot["job"]["id"], f"{name} bootstrap")
        save()
        step()
        say(f"{name}: bootstrap done ({time.monotonic() - t0:.0f} s)")
    ls_id: int | None = None
    for k in range(max(done, 1), cfg.rounds + 1):
        t0 = time.monotonic()
        current = next((r for r in env.client.rounds(pid) if r["index"] == k), None)
        if current is None:
            current = env.client.round_action(
                pid, "start", {"budget": cfg.budget, "strategy": strategy, "ask": cfg.ask, "seed": seed * 1000 + k}
            )
        asks = current["asks"]
        asked = [int(i) for i, _ in asks]
        if ls_id is None:  # the first push set the Label Studio project up
            ls_id = env.client.find_project(str(pid))["ls_project_id"]
        annotator.begin_round(k)
        answered = 0
        for task in env.studio.open_tasks(ls_id):
            result, seconds = annotator.answer(task.data)
            env.studio.annotate(task.task_id, result, lead_time=seconds)
            answered += 1
        by_webhook = _wait_for_labels(env, pid, asked)
        record["webhooks"] = [w for w in record["webhooks"] if w["round"] != k]
        record["webhooks"].append({"round": k, "asked": len(asked), "answered": answered, "by_webhook": by_webhook})
        if current["status"] in ("annotating", "failed"):
            close = env.client.round_action(pid, "close")
            _run_job(env, close["job"]["id"], f"{name} round {k}")
        record["annotator_mistakes"] = int(record.get("annotator_mistakes", 0)) + annotator.mistakes
        annotator.mistakes = 0
        save()
        step()
        last = record["rounds"][-1]["metrics"]
        say(
            f"{name}: round {k}/{cfg.rounds}: {len(asked)} asked ({sum(kind == 'mask' for _, kind in asks)} masks), "
            f"{last['regime']}, image AP {last['metrics'].get('image_ap', float('nan')):.3f}, cost {last['cost']:.0f} "
            f"({time.monotonic() - t0:.0f} s)"
        )
    record["complete"] = True
    save()
    return {**record, "rounds": record["rounds"][: cfg.rounds + 1]}


# ---- the full-supervision reference ---------------------------------------------------------
def reference(
    cfg: SimConfig, ds: Dataset, pool: Sequence[Sample], test: Sequence[Sample], seed: int, say: Say
) -> dict[str, float]:
    """Test metrics of a model trained on the whole pool with every label (cached per seed)."""
    from ml.artifact import load_model
    from ml.evaluate import evaluate
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    path = cfg.out / "reference" / f"seed{seed}.json"
    try:
        rec = json.loads(path.read_text())
        if rec.get("config") == json.loads(json.dumps(cfg.reference_key())):
            return rec["metrics"]
    except (OSError, ValueError):
        pass
    t0 = time.monotonic()
    train = Dataset(
        root=ds.root, samples=tuple(replace(s, split="train") for s in pool), source=f"{ds.source} (pool, all labels)"
    )
    tc = TrainConfig(
        image_size=cfg.image_size,
        epochs=cfg.epochs,
        seed=seed,
        device=cfg.device,
        **({"backbone": cfg.backbone} if cfg.backbone else {}),
    )
    model_dir = cfg.out / "reference" / f"seed{seed}-model"
    summary = train_and_save(train, model_dir, tc)
    metrics = evaluate(load_model(model_dir, device=cfg.device).predictor, list(test))
    metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"config": cfg.reference_key(), "regime": summary.trained.regime.value, "metrics": metrics}, indent=1
        )
    )
    say(
        f"reference seed {seed}: {summary.trained.regime.value}, image AP {metrics.get('image_ap', float('nan')):.3f} "
        f"({time.monotonic() - t0:.0f} s)"
    )
    return metrics


# ---- the study -------------------------------------------------------------------------------
def write_outputs(out: Path, runs: Sequence[Run], title: str) -> dict[str, Any]:
    """curves.json, one PNG per x axis, summary.md and summary.json under ``out``."""
    curves = curves_json(runs)
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    for x in X_AXES:
        plot(runs, x, out / f"curves_vs_{x}.png", title=title)
    (out / "summary.json").write_text(json.dumps(curves["summary"], indent=1))
    (out / "summary.md").write_text(
        summary_markdown(curves["summary"]) if curves["summary"] else "no full-supervision reference\n"
    )
    return curves


def simulate(cfg: SimConfig, say: Say = print) -> dict[str, Any]:
    """Run (or resume) the study; its curves (also written under ``cfg.out``)."""
    from rich.console import Console
    from rich.progress import Progress

    from backend.services.rounds import STRATEGY_NAMES

    unknown = [s for s in cfg.strategies if s not in STRATEGY_NAMES]
    if unknown:
        raise ValueError(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(STRATEGY_NAMES)}")
    if cfg.rounds < 1 or cfg.budget <= 0:
        raise ValueError("rounds must be >= 1 and budget > 0")
    ds, pool, test = prepare_data(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(cfg.to_json(), indent=1))
    say(
        f"{ds.root}: pool {len(pool)} images ({sum(s.label for s in pool)} defective), "
        f"test {len(test)} ({sum(s.label for s in test)} defective)"
    )
    refs = {seed: reference(cfg, ds, pool, test, seed, say) for seed in cfg.seeds} if cfg.reference else {}
    todo = [(st, seed) for seed in cfg.seeds for st in cfg.strategies if finished_run(cfg, st, seed) is None]
    if todo:
        with (
            Progress(console=Console(stderr=True), transient=True) as bar,
            environment(cfg, files_root(ds), say) as env,
        ):
            task = bar.add_task("rounds", total=len(todo) * (cfg.rounds + 1))
            for strategy, seed in todo:
                run_one(
                    env, cfg, strategy, seed, pool, test, lambda m: bar.console.print(m), step=lambda: bar.advance(task)
                )
    runs = []
    for seed in cfg.seeds:
        for strategy in cfg.strategies:
            rec = finished_run(cfg, strategy, seed)
            runs.append(
                Run(f"{strategy}-seed{seed}", strategy, seed, [r["metrics"] for r in rec["rounds"]], refs.get(seed, {}))
            )
    return write_outputs(cfg.out, runs, title=f"{ds.root.name}: budget {cfg.budget:g}/round, {len(cfg.seeds)} seed(s)")
