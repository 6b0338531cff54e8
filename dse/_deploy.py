"""`dse deploy` and `dse verify`: a study's trial (or a baseline) as a deployable bundle.

The partition is rebuilt from the study's own settings and the trial's parameters, and only
deployed when it is provably the one the study evaluated: same model weights (the study's
fingerprint), same replication factor as the trial recorded. The bundle format itself lives
in `robustdice_core.bundle` (docs/bundle.md); the nodes' CURVE keys come from `runtime`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from dse._pick import PICK_RULES
from dse._problem import Evaluation, RobustnessProblem
from dse._record import TrialRecord, is_feasible, named_constraints
from dse._results import StudySnapshot, load_snapshot
from robustdice_core import BASELINES, CorruptFileError, InvalidParameterError, Partition
from robustdice_core.bundle import (
    RUNTIME_NAME,
    SECRET_NAME,
    ExpectedMetrics,
    Manifest,
    NodeKeys,
    Origin,
    VerifyReport,
    check_out_dir,
    device_dir,
    read_manifest,
    read_runtime,
    verify_bundle,
    write_bundle,
)
from runtime import curve_keypairs, curve_public_key

__all__ = ["DeployResult", "deploy", "verify"]

KeyMaker = Callable[[int], list[NodeKeys]]


@dataclass(frozen=True)
class DeployResult:
    """A written bundle and how its partition was chosen."""

    out: Path
    manifest: Manifest
    selection: str  # "trial 7", "trial 7 (pick knee)", "baseline cdc"
    feasible: bool
    notes: tuple[str, ...]
    seconds: float


def deploy(
    storage_url: str,
    study_name: str | None,
    *,
    out: Path,
    trial: int | None = None,
    pick: str | None = None,
    method: str | None = None,
    force: bool = False,
    local: bool = False,
    keys: KeyMaker = curve_keypairs,
    clock: Callable[[], datetime] | None = None,
    problem: RobustnessProblem | None = None,
) -> DeployResult:
    """Write the bundle of one trial (``trial`` or ``pick``) or baseline (``method``).

    Args:
        storage_url: the study storage (`dse optimize --storage`).
        study_name: the study; None for the most recent one in the storage.
        out: the bundle folder (new or empty; with ``force`` an earlier bundle is replaced).
        trial: a COMPLETE trial's number.
        pick: a pick rule (`PICK_RULES`) choosing a trial of the feasible front.
        method: a baseline (`BASELINES`: lop, cdc, replication) under the study's settings.
        force: also replace an earlier bundle and deploy an infeasible trial.
        local: loopback addresses for `dse run --local`.
        keys: makes one CURVE key pair per node (injected in tests).
        clock: the creation time's source.
        problem: the study's problem if already built (reused when its settings are the
            study's up to search-only ones, as in `prepare_study`).
    """
    start = time.perf_counter()
    _check_choice(trial, pick, method)
    check_out_dir(out, force)
    snapshot = load_snapshot(storage_url, study_name)
    chosen = _chosen_trial(snapshot, trial, pick)
    problem = _problem(snapshot, problem)
    notes = _check_weights(problem, snapshot)
    if chosen is not None:
        partition = _trial_partition(problem, chosen, notes)
        selection = f"trial {chosen.number}" + (f" (pick {pick})" if pick else "")
    else:
        assert method is not None  # `_check_choice`: exactly one of the three
        partition = BASELINES.get(method)().partition(
            problem.bench.unit_sizes, snapshot.settings.devices
        )
        selection = f"baseline {method}"
    evaluation = problem.evaluate_partition(partition)
    broken = _broken_constraints(problem, chosen, evaluation)
    if broken and not force:
        raise InvalidParameterError(
            f"{selection} of study `{snapshot.name}` is infeasible (it breaks "
            f"{', '.join(broken)}); pass `--force` to deploy it anyway."
        )
    *node_keys, client_key = keys(partition.num_devices + 1)  # the last: the client's
    manifest = write_bundle(
        out,
        problem.bench.model,
        partition,
        keys=node_keys,
        client_key=client_key,
        expected=_expected(problem, evaluation),
        origin=Origin(
            method=partition.method,
            study=snapshot.name,
            storage=storage_url,
            trial=None if chosen is None else chosen.number,
            pick=pick,
        ),
        traced=problem.bench.traced,
        local=local,
        force=force,
        clock=clock,
    )
    notes.extend(_dtype_note(problem))
    return DeployResult(
        out, manifest, selection, not broken, tuple(notes), time.perf_counter() - start
    )


def _problem(snapshot: StudySnapshot, problem: RobustnessProblem | None) -> RobustnessProblem:
    if problem is None:
        return RobustnessProblem(snapshot.settings)
    return (
        problem
        if problem.settings == snapshot.settings
        else problem.for_settings(snapshot.settings)
    )


def _broken_constraints(
    problem: RobustnessProblem, trial: FrozenTrial | None, evaluation: Evaluation
) -> list[str]:
    """The constraints the trial broke as recorded (a baseline: as evaluated now)."""
    names = problem.settings.constraint_names
    if trial is None:
        values = dict(zip(names, evaluation.constraints, strict=True))
        return [name for name, value in values.items() if value > 0]
    if is_feasible(trial):
        return []
    broken = [name for name, value in named_constraints(trial, names).items() if value > 0]
    return broken or ["its recorded constraints"]


def _check_choice(trial: int | None, pick: str | None, method: str | None) -> None:
    options = (("--trial", trial), ("--pick", pick), ("--method", method))
    given = [flag for flag, value in options if value is not None]
    if len(given) != 1:
        shown = " and ".join(f"`{g}`" for g in given) if given else "none"
        raise InvalidParameterError(
            f"give exactly one of `--trial N`, `--pick RULE` or `--method NAME`; got {shown}."
        )
    if pick is not None:
        PICK_RULES.get(pick)
    if method is not None:
        BASELINES.get(method)


def _chosen_trial(
    snapshot: StudySnapshot, number: int | None, pick: str | None
) -> FrozenTrial | None:
    if pick is not None:
        return snapshot.pick(pick)
    if number is None:
        return None
    trial = snapshot.trial(number)
    if trial.state != TrialState.COMPLETE:
        raise InvalidParameterError(
            f"trial {number} of study `{snapshot.name}` is {trial.state.name}; only a "
            "COMPLETE trial has a partition to deploy (`dse pareto` lists the front)."
        )
    return trial


def _check_weights(problem: RobustnessProblem, snapshot: StudySnapshot) -> list[str]:
    """The model's weights are the ones the study ran on; a note for fresh random weights."""
    model = problem.bench.model
    stored = snapshot.fingerprints.get("weights")
    if stored == model.weights_hash():
        return []
    if not model.has_weights:
        return [
            "architecture-only study: its random weights were never stored, so the bundle "
            "carries fresh random weights (the costs are the study's; there is no accuracy)"
        ]
    raise InvalidParameterError(
        f"the weights of `{model.spec.name}` ({model.weights_source}) have sha256 "
        f"{model.weights_hash()[:12]}..., but study `{snapshot.name}` ran on "
        f"{str(stored)[:12]}...; the weights changed since the study: rerun it on these "
        "weights, or restore the file the study used."
    )


def _trial_partition(
    problem: RobustnessProblem, trial: FrozenTrial, notes: list[str]
) -> Partition:
    """The trial's partition, rebuilt from its parameters and checked against its record."""
    missing = problem.search.missing(trial.params)
    if missing:
        raise InvalidParameterError(
            f"trial {trial.number} has no value for `{missing[0]}`: the study's search space "
            "is not the one rebuilt from its settings; rerun the study."
        )
    partition = problem.search.partition_for(trial.params, problem.settings.devices)
    record = TrialRecord.from_trial(trial)
    if record is not None and record.method not in (None, partition.method):
        raise InvalidParameterError(
            f"trial {trial.number} ran `{record.method}`, but its parameters select "
            f"`{partition.method}` here: the study's search space is not the one rebuilt "
            "from its settings; rerun the study."
        )
    recorded = record.replication_factor if record is not None else float("nan")
    if not math.isclose(partition.replication_factor, recorded, rel_tol=1e-9):
        message = (
            f"trial {trial.number}'s thresholds give replication factor "
            f"{partition.replication_factor:.6g} here, but the study recorded {recorded:.6g}"
        )
        if problem.bench.model.has_weights:
            raise InvalidParameterError(
                f"{message}: the scores or the partitioner changed since the study ran; rerun "
                "the study."
            )
        notes.append(f"{message} (other random weights, other s1 scores)")
    return partition


def _expected(problem: RobustnessProblem, evaluation: Evaluation) -> ExpectedMetrics:
    record = TrialRecord.from_evaluation(evaluation)
    provenance = None
    if evaluation.outcome.accuracy is not None:
        data = problem.bench.require_data()
        provenance = (
            f"simulated: masked model on {len(data.test)} test images ({data.name}), "
            "per failure set"
        )
    return ExpectedMetrics(
        costs=evaluation.outcome.costs,
        replication_factor=evaluation.partition.replication_factor,
        top1_pct=tuple(record.top1_pct.items()),
        accuracy_provenance=provenance,
    )


def _dtype_note(problem: RobustnessProblem) -> list[str]:
    dtype = problem.settings.dtype.value
    if dtype == "fp32":
        return []
    return [f"expected figures are at {dtype}; the shards hold the model's own fp32 weights"]


def verify(directory: Path) -> VerifyReport:
    """`verify_bundle`, plus: every node's secret key belongs to its public key in
    runtime.json (pyzmq derives it; the core cannot)."""
    report = verify_bundle(directory)
    _check_key_pairs(directory, read_manifest(directory))
    return report


def _check_key_pairs(directory: Path, manifest: Manifest) -> None:
    runtime = read_runtime(directory)
    for node in runtime.nodes[: manifest.num_devices]:
        path = directory / device_dir(node.rank) / SECRET_NAME
        if curve_public_key(path.read_text().strip()) != node.public_key:
            raise CorruptFileError(
                f"`{path}` is not the secret key of node {node.rank}'s public key in "
                f"{RUNTIME_NAME}; keys were mixed up between nodes: deploy again."
            )
