"""How many hidden defects a simulate study's rounds trained on as pseudo-normal.

Reads the service database a ``defectloop simulate`` study leaves under ``OUT/service`` and
the dataset's ground truth: for every retrain of every run, the pseudo-normal images it
trained on and how many of them are defective in truth. Read-only; prints a Markdown table
(``--json`` also writes the rows).

    python bench/pseudo_normal_audit.py runs/sim/magnetic-tile ../shared/datasets/magnetic-tile
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from ml.data import load_dataset


def truth_by_path(data: Path) -> dict[str, int]:
    """Resolved image path -> ground-truth label (0/1) of every image in the dataset."""
    return {str(s.image.resolve()): int(s.label) for s in load_dataset(data).samples}


def audit(out: Path, data: Path) -> list[dict]:
    """One row per retrain that named pseudo-normals: run, round, count, hidden defects."""
    db = out / "service" / "defectloop.db"
    if not db.is_file():
        raise SystemExit(f"{db}: no service database (is {out} a simulate study's --out?)")
    truth = truth_by_path(data)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    names = dict(con.execute("select id, name from project"))
    # image id -> ground truth (ids are unique across the study's projects)
    label_of = {i: truth.get(str(Path(uri).resolve())) for i, uri in con.execute("select id, uri from image")}
    pool_size = dict(con.execute("select project_id, count(*) from image where split = 'pool' group by project_id"))
    rounds = {rid: idx for rid, idx in con.execute('select id, "index" from round')}
    rows = []
    jobs = con.execute(
        "select project_id, payload, created_at from job where kind = 'train' and status = 'succeeded' order by id"
    )
    for pid, payload, job_created in jobs.fetchall():
        p = json.loads(payload)
        ids = p.get("pseudo_normal_ids") or _described(db, pid, p.get("pseudo_normal"))
        if p.get("round_id") is None or not ids:
            continue
        index = rounds.get(p["round_id"])
        row = {
            "run": names[pid],
            "round": index,
            "pseudo_normal": len(ids),
            "hidden_defects": sum(label_of[i] == 1 for i in ids),
        }
        if index:  # what half of the whole pool (the count before it became half the unlabelled pool) would have held
            whole = _whole_pool_rule(con, pid, index, job_created, pool_size[pid] // 2)
            row.update(
                {"whole_pool_rule": len(whole), "whole_pool_rule_hidden_defects": sum(label_of[i] == 1 for i in whole)}
            )
        rows.append(row)
    return rows


def _described(db: Path, project_id: int, described: dict | None) -> list[int]:
    """The ids a job's described pseudo-normal pool (``TrainPayload.pseudo_normal``) names,
    resolved as the job resolved them."""
    if not described:
        return []
    from backend.db.engine import make_engine, read_session_factory
    from backend.domain.jobs import PseudoNormalPool
    from backend.services.pool_candidates import resolve_pseudo_normals

    engine = make_engine(f"sqlite:///{db}")
    try:
        with read_session_factory(engine)() as s:
            pool = PseudoNormalPool.model_validate(described)
            return resolve_pseudo_normals(s, project_id=project_id, pool=pool)
    finally:
        engine.dispose()


def _whole_pool_rule(con: sqlite3.Connection, pid: int, index: int, before: str, count: int) -> list[int]:
    """The ``count`` lowest-scoring unlabelled pool images by the model the round started
    from (round ``index - 1``), with the labels present at ``before``."""
    labelled = {
        i
        for (i,) in con.execute(
            (
                "select image_id from label where created_at <= ? and image_id in (select id from image where "
                "project_id = ?)"
            ),
            (before, pid),
        )
    }
    mv = con.execute(
        (
            "select mv.id from model_version mv join round r on mv.round_id = r.id where r.project_id = ? and "
            'r."index" = ?'
        ),
        (pid, index - 1),
    ).fetchone()
    if mv is None:
        return []
    scores = sorted(
        (s, i)
        for i, s in con.execute("select image_id, score from prediction where model_version_id = ?", mv)
        if i not in labelled
    )
    return [i for _, i in scores[:count]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the simulate study's --out folder")
    ap.add_argument("data", type=Path, help="the dataset the study ran on (its ground truth)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = audit(args.out, args.data)
    print(
        "| run | round | pseudo-normal images | hidden defects among them | half the whole pool would have been "
        "| hidden defects among those |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        n, d = r["pseudo_normal"], r["hidden_defects"]
        wn, wd = r.get("whole_pool_rule"), r.get("whole_pool_rule_hidden_defects")
        whole = f"{wn} | {wd} ({wd / wn:.0%})" if wn else "- | -"
        print(f"| {r['run']} | {r['round']} | {n} | {d} ({d / n:.0%}) | {whole} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
