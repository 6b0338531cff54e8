"""`dse deploy` / `dse verify`: a study's trial or baseline as a bundle, refused when it is not
provably the partition the study evaluated."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dse import (
    FINGERPRINTS_ATTR,
    RobustnessProblem,
    StudySettings,
    TrialRecord,
    _deploy,
    open_storage,
    prepare_study,
    run_study,
)
from dse._deploy import deploy, verify
from dse.cli import main
from robustdice_core import CorruptFileError, InvalidParameterError, UnknownNameError
from robustdice_core.bundle import MANIFEST_NAME, SECRET_NAME, load_shard, read_manifest

STUDY = "s"
BASE = StudySettings(model="digits-vgg-bn", test_size=50)


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(BASE)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, problem: RobustnessProblem) -> str:
    """A finished study of 4 trials with a memory limit between LOP's and full replication's:
    trial 0 (every threshold 0: full replication) is infeasible, trial 1 (one cluster) is not."""
    baselines = problem.baselines()
    lop = baselines["lop"].outcome.costs.max_memory_mb
    full = baselines["replication"].outcome.costs.max_memory_mb
    settings = BASE.replace(max_mem_mb=(lop + full) / 2)
    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'studies.db'}"
    with prepare_study(settings, storage_url=url, study_name=STUDY, problem=problem) as prepared:
        run_study(prepared, trials=4)
    return url


def copy_storage(storage: str, tmp_path: Path) -> str:
    source = Path(storage.removeprefix("sqlite:///"))
    target = tmp_path / "copy.db"
    shutil.copy(source, target)
    return f"sqlite:///{target}"


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=open_storage(storage))


def test_a_trial_becomes_a_verified_bundle(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    result = deploy(storage, STUDY, trial=1, out=tmp_path / "b", problem=problem)
    trial = load(storage).trials[1]
    record = TrialRecord.from_trial(trial)
    assert record is not None and result.feasible
    manifest = result.manifest
    assert (manifest.origin.study, manifest.origin.trial, manifest.origin.method) == (
        STUDY,
        1,
        "robustdice",
    )
    assert manifest.expected is not None
    assert manifest.expected.replication_factor == pytest.approx(record.replication_factor)
    assert dict(manifest.expected.top1_pct) == pytest.approx(dict(record.top1_pct))
    assert "50 test images" in str(manifest.expected.accuracy_provenance)
    thresholds = problem.space.thresholds([trial.params[n] for n in problem.space.names])
    assert list(manifest.thresholds) == pytest.approx(thresholds)
    report = verify(tmp_path / "b")
    assert report.max_abs_logit_diff == 0.0


def test_an_infeasible_trial_needs_force(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    refused = r"trial 0 .* infeasible \(it breaks max_mem_mb\); pass `--force`"
    with pytest.raises(InvalidParameterError, match=refused):
        deploy(storage, STUDY, trial=0, out=tmp_path / "b", problem=problem)
    assert not (tmp_path / "b").exists()
    result = deploy(storage, STUDY, trial=0, out=tmp_path / "b", force=True, problem=problem)
    assert not result.feasible and result.manifest.partition.replication_factor == 4.0


def test_unknown_and_unfinished_trials_are_named(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    with pytest.raises(InvalidParameterError, match=r"`--trial 99` does not exist .*0\.\.3"):
        deploy(storage, STUDY, trial=99, out=tmp_path / "b", problem=problem)
    copy = copy_storage(storage, tmp_path)
    study = load(copy)
    study.tell(study.ask(), state=TrialState.FAIL)
    with pytest.raises(InvalidParameterError, match="trial 4 .* is FAIL; only a COMPLETE"):
        deploy(copy, STUDY, trial=4, out=tmp_path / "b", problem=problem)


def test_method_cdc_deploys_the_baseline(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    result = deploy(storage, STUDY, method="cdc", out=tmp_path / "b", problem=problem)
    manifest = result.manifest
    assert result.selection == "baseline cdc"
    assert manifest.partition.parity_device == 3 and manifest.origin.trial is None
    assert manifest.origin.method == "cdc"
    assert manifest.expected is not None
    weights = [d.weight_bytes for d in manifest.expected.costs.per_device]
    assert list(manifest.shard_bytes()) == weights
    parity = load_shard(tmp_path / "b", 3)  # decodes lost slices: BatchNorm of every neuron
    assert parity["features.1.running_var"].shape[0] == manifest.partition.unit_sizes[0]
    verify(tmp_path / "b")


def test_the_pick_rule_chooses_a_front_trial(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    result = deploy(storage, STUDY, pick="knee", out=tmp_path / "b", problem=problem)
    assert result.feasible and result.manifest.origin.pick == "knee"
    assert result.selection.endswith("(pick knee)")


def test_swapped_secret_keys_are_refused(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    """Even with consistent hashes, a secret key must belong to its node's public key."""
    out = tmp_path / "b"
    deploy(storage, STUDY, method="lop", out=out, problem=problem)
    first, second = (out / f"device-{r}" / SECRET_NAME for r in (0, 1))
    keys = first.read_bytes(), second.read_bytes()
    first.write_bytes(keys[1])
    second.write_bytes(keys[0])
    manifest = read_manifest(out)
    files = dict(manifest.files)
    for path in (first, second):
        files[f"{path.parent.name}/{SECRET_NAME}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    forged = dataclasses.replace(manifest, files=tuple(sorted(files.items())))
    (out / MANIFEST_NAME).write_text(forged.to_json())
    with pytest.raises(CorruptFileError, match="device-0/secret.key` is not the secret key"):
        verify(out)


def test_changed_weights_are_refused(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    copy = copy_storage(storage, tmp_path)
    study = load(copy)
    fingerprints = dict(study.user_attrs[FINGERPRINTS_ATTR])
    fingerprints["weights"] = "0" * 64
    study.set_user_attr(FINGERPRINTS_ATTR, fingerprints)
    with pytest.raises(InvalidParameterError, match="ran on 000000000000.*weights changed"):
        deploy(copy, STUDY, trial=1, out=tmp_path / "b", problem=problem)


def test_a_partition_that_no_longer_matches_its_record_is_refused(
    storage: str, problem: RobustnessProblem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TrialRecord.from_trial

    def recorded_elsewhere(trial: optuna.trial.FrozenTrial) -> TrialRecord | None:
        record = original(trial)
        return None if record is None else dataclasses.replace(record, replication_factor=3.5)

    monkeypatch.setattr(_deploy.TrialRecord, "from_trial", staticmethod(recorded_elsewhere))
    with pytest.raises(InvalidParameterError, match="study recorded 3.5: the scores"):
        deploy(storage, STUDY, trial=1, out=tmp_path / "b", problem=problem)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, InvalidParameterError, "give exactly one of `--trial N`"),
        ({"trial": 1, "pick": "knee"}, InvalidParameterError, "got `--trial` and `--pick`"),
        ({"method": "tmr"}, UnknownNameError, "lop"),
        ({"pick": "best"}, UnknownNameError, "knee"),
    ],
)
def test_choice_errors_come_before_any_work(
    tmp_path: Path, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        deploy("no-such-storage.db", STUDY, out=tmp_path / "b", **options)  # type: ignore[arg-type]


def test_a_non_empty_out_is_refused_before_the_study_is_read(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(InvalidParameterError, match="not empty; pass `--force`"):
        deploy("no-such-storage.log", STUDY, trial=1, out=tmp_path / "b")


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dse", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_cli_errors_are_one_line(
    storage: str,
    problem: RobustnessProblem,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["deploy", STUDY, "--storage", storage, "--trial", "42", "--out", str(tmp_path / "b")]
    assert run_main(monkeypatch, *args) == 2
    err = capsys.readouterr().err.strip()
    assert "`--trial 42` does not exist" in err and len(err.splitlines()) == 1
    deploy(storage, STUDY, trial=1, out=tmp_path / "b", problem=problem)
    (tmp_path / "b" / MANIFEST_NAME).write_text("{")
    assert run_main(monkeypatch, "verify", str(tmp_path / "b")) == 2
    err = capsys.readouterr().err.strip()
    assert "manifest.json` is not valid JSON" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_optimize_deploy_verify_end_to_end(tmp_path: Path) -> None:
    storage, bundle = str(tmp_path / "s.log"), tmp_path / "B"
    steps = [
        ["optimize", "--test-size", "50", "--trials", "4", "--storage", storage],
        ["deploy", "--storage", storage, "--pick", "knee", "--out", str(bundle)],
        ["verify", str(bundle)],
    ]
    steps[0] += ["--out", str(tmp_path / "O")]
    outputs = []
    for args in steps:
        done = subprocess.run(
            [sys.executable, "-m", "dse.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=os.environ.copy(),
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert str(bundle) in outputs[1].strip().splitlines()[-1]
    assert read_manifest(bundle).origin.pick == "knee"
    assert "verified" in outputs[2].strip().splitlines()[-1]
