"""Several processes writing to one database at once lose and duplicate nothing (SQLite and PostgreSQL).

Threads share one engine; separate processes share only the database file or server, which is
how `serve`, its worker and a `defectloop import` run side by side. Each writer here is a real
interpreter started with the database URL.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import Engine, func, select

from backend.db.engine import session_factory
from backend.db.tables import Image, Label, Project
from backend.services.labels import label_history
from backend.services.projects import create_project

_LABEL_WRITER = textwrap.dedent(
    """
    import sys
    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import Image
    from backend.services.labels import LabelIn, add_label

    url, image_id, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Session = session_factory(make_engine(url))
    for i in range(15):
        with Session.begin() as s:
            add_label(s, image=s.get(Image, image_id), label=LabelIn(is_defective=bool(i % 2), annotator=name))
    """
)

_IMPORTER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import Project
    from backend.services.images import import_path

    url, project_id, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    Session = session_factory(make_engine(url))
    with Session.begin() as s:
        results = import_path(s, project=s.get(Project, project_id), path=folder / "images", roots=[folder])
    print(json.dumps([r.status for r in results]))
    """
)


def _run_all(script: str, args: list[list[str]]) -> list[str]:
    """Start one interpreter per argument list at once; return their stdouts, failing on any error."""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in args
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_label_writes_from_several_processes_lose_nothing(migrated: Engine) -> None:
    Session = session_factory(migrated)
    with Session.begin() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        img = Image(project_id=project.id, uri="a.png", sha256="0" * 64, width=5, height=4)
        s.add(img)
        s.flush()
        image_id = img.id
    _run_all(_LABEL_WRITER, [[_url(migrated), str(image_id), f"proc{k}"] for k in range(3)])
    with Session() as s:
        assert s.scalar(select(func.count(Label.id))) == 45
        history = label_history(s, image_id=image_id)
        assert {h.annotator for h in history} == {"proc0", "proc1", "proc2"}
        assert len({h.id for h in history}) == 45


def test_imports_from_several_processes_lose_and_duplicate_nothing(migrated: Engine, tiny_demo: Path) -> None:
    Session = session_factory(migrated)
    with Session.begin() as s:
        project_id = create_project(s, name="line-1").id
    outs = _run_all(_IMPORTER, [[_url(migrated), str(project_id), str(tiny_demo)] for _ in range(3)])
    statuses = [st for out in outs for st in json.loads(out.strip().splitlines()[-1])]
    with Session() as s:
        n_images = s.scalar(select(func.count(Image.id)))
        n_hashes = s.scalar(select(func.count(func.distinct(Image.sha256))))
    assert n_images == n_hashes == 44
    assert statuses.count("imported") == 44
    assert statuses.count("duplicate") == 2 * 44
