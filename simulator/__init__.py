"""The whole loop, unattended: a simulated annotator answers through Label Studio.

Given a fully labelled dataset, each (strategy, seed) run is a project of its own: the
dataset's test split is imported with its labels (the fixed evaluation set), every other
image goes into the pool unlabelled. Then the real loop runs: bootstrap, and per round the
service selects and pushes a batch to a real Label Studio, the simulated annotator answers
each open task there from the ground truth (verdict only or with a mask, as the task asks,
with an optional error rate and a lead time), Label Studio's webhooks bring the answers in,
closing the round syncs and retrains. A full-supervision model trained on the same pool
with every label is the reference that the summary measures strategies against.

The study drives its own service the way a user's script would: ``defectloop serve`` runs
in a child process (its embedded worker runs the jobs) and everything goes through the HTTP
client (``backend.client``); the annotator works in Label Studio through its API.
tests/test_layers.py keeps this package away from the service's database, services, routes
and jobs.

Runs are written round by round (``runs/<strategy>-seed<k>/rounds.json``, beside the study's
own service database and Label Studio). Running the same command again repeats nothing: a
finished run is reused, an interrupted one goes on from its last recorded round (a round
caught while annotating or retraining is finished, a retrain or pool scoring the dead
process left unfinished is run again), and asking for more ``--rounds`` extends finished
runs instead of starting over.

Modules: ``config`` (the study's settings, its data and their keys), ``annotator``, ``errors``,
``environment`` (Label Studio and the service, started and stopped), ``projects`` (a run's
project through the client: import, ground truth, jobs, recovery), ``loop`` (one run, round
by round) and ``study`` (the reference, the whole study and its curves).
"""

from simulator.annotator import AnnotatorModel, SimulatedAnnotator
from simulator.config import SimConfig, files_root, prepare_data
from simulator.environment import Environment, environment
from simulator.errors import SimulationError
from simulator.loop import finished_run, recorded_run, run_one
from simulator.projects import truth
from simulator.study import reference, simulate, write_outputs

__all__ = [
    "AnnotatorModel",
    "Environment",
    "SimConfig",
    "SimulatedAnnotator",
    "SimulationError",
    "environment",
    "files_root",
    "finished_run",
    "prepare_data",
    "recorded_run",
    "reference",
    "run_one",
    "simulate",
    "truth",
    "write_outputs",
]
