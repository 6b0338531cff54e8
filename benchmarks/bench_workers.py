"""Scale out (`dse optimize --workers K`): trials per minute, storage overhead, join times.

The real command in its own process (``python -m dse.cli optimize``), as a user runs it:

    dse optimize --test-size 100 --sampler random --trials 40 --workers K --storage S
                 --objectives acc,mem,energy

on the embedded default model (digits-vgg-bn, ND = 4), for K = 1, 2 and S = a journal file in
a temp folder and a PostgreSQL database on a local server started here (initdb/pg_ctl in a
temp folder as an unprivileged user, on a free loopback port, as `tests/dse/conftest.py`
does; skipped with a note where PostgreSQL's binaries are missing). Each storage is fresh
per run. The study is then read back with Optuna; per run, from its COMPLETE trials:

- trials/min: trials over the span from the first trial's start to the last one's end
  (``datetime_start`` / ``datetime_complete``);
- storage overhead per trial: a trial's duration minus its evaluation (the ``seconds`` of its
  record: partition, costs, accuracy): writing parameters, record, constraints, state,
  heartbeats, the budget's reads; median over the trials;
- worker joins in: per worker (the ``worker`` attribute, ``host/pid``, of its trials), its
  first trial's start minus the command's start; with K = 1 the command's own start-up;
- wall time of the command;
- a second command joins in (K = 1 only): while a first command runs a study (a budget it
  never reaches), the same command is started again, as on another machine; from its start
  to the start of its first trial. Both are then stopped with Ctrl-C.

Tables show medians over the repetitions, run interleaved (repetition by repetition, every
storage and K), on a shared machine: the load average at each run's start is in the JSON.

    python -m benchmarks.bench_workers [--quick] [--repeats 3] [--no-postgres] [--no-second]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from benchmarks._common import BenchResult, code_state, console, make_table, quick_parser, report
from benchmarks._postgres import PostgresServer, postgres_server

NAME = "workers"
REPO = Path(__file__).resolve().parent.parent
TRIALS, TEST_SIZE, SAMPLER, OBJECTIVES = 40, 100, "random", "acc,mem,energy"
WORKERS = (1, 2)
REPEATS, QUICK_REPEATS = 3, 1
SECOND_BUDGET = 100_000  # the first command of the second-command case never finishes
RUN_TIMEOUT_S = 600.0
POLL_S = 0.25
# Where dse keeps what is read here (the pure functions below do not import dse, so that
# their test stays fast; `run` checks that the names still match).
WORKER_ATTR = "worker"  # dse._workers.WORKER_ATTR: "<host>/<pid>" of the process
SECONDS_ATTR = "seconds"  # dse.TrialRecord.seconds: evaluation seconds per step
JOURNAL, POSTGRES = "journal file", "PostgreSQL"


# ------------------------------------------------------------------ pure computations
def complete_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials with a start and an end, in start order."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.datetime_start is not None
        and t.datetime_complete is not None
    ]
    return sorted(done, key=lambda t: _start(t))


def trials_per_minute(trials: Sequence[FrozenTrial]) -> float | None:
    """COMPLETE trials per minute over the span from the first one's start to the last one's
    end; None without a positive span."""
    done = complete_trials(trials)
    if not done:
        return None
    span = span_s(done)
    return 60.0 * len(done) / span if span > 0 else None


def span_s(trials: Sequence[FrozenTrial]) -> float:
    """Seconds from the first COMPLETE trial's start to the last one's end."""
    done = complete_trials(trials)
    if not done:
        return 0.0
    first = min(_start(t) for t in done)
    last = max(_end(t) for t in done)
    return (last - first).total_seconds()


def evaluation_s(trial: FrozenTrial) -> float | None:
    """The evaluation seconds of a trial's record (sum of its steps); None without one."""
    seconds = trial.user_attrs.get(SECONDS_ATTR)
    if not isinstance(seconds, Mapping):
        return None
    return float(sum(float(v) for v in seconds.values()))


def overheads_s(trials: Sequence[FrozenTrial]) -> list[float]:
    """Per COMPLETE trial with a record: its duration minus its evaluation seconds."""
    out = []
    for trial in complete_trials(trials):
        evaluation = evaluation_s(trial)
        if evaluation is not None:
            out.append((_end(trial) - _start(trial)).total_seconds() - evaluation)
    return out


def join_offsets_s(trials: Sequence[FrozenTrial], started: dt.datetime) -> dict[str, float]:
    """Per worker (its ``worker`` attribute), its first trial's start minus ``started`` (the
    command's start), over trials of any state that a worker began; if no trial names its
    worker, only the first trial's start offset, under ``"first trial"``."""
    firsts: dict[str, dt.datetime] = {}
    for trial in trials:
        worker = trial.user_attrs.get(WORKER_ATTR)
        if trial.datetime_start is None or worker is None:
            continue
        name = str(worker)
        if name not in firsts or trial.datetime_start < firsts[name]:
            firsts[name] = trial.datetime_start
    if not firsts:
        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        if not starts:
            return {}
        firsts = {"first trial": min(starts)}
    return {name: (first - started).total_seconds() for name, first in firsts.items()}


def first_trial_of(trials: Sequence[FrozenTrial], pid: int) -> dt.datetime | None:
    """The start of the first trial that the process ``pid`` ran (its ``worker`` attribute)."""
    starts = [
        t.datetime_start
        for t in trials
        if t.datetime_start is not None
        and str(t.user_attrs.get(WORKER_ATTR, "")).endswith(f"/{pid}")
    ]
    return min(starts) if starts else None


def run_row(trials: Sequence[FrozenTrial], started: dt.datetime, wall_s: float) -> dict[str, Any]:
    """What one run measured, from its study's trials."""
    done = complete_trials(trials)
    overhead = overheads_s(done)
    evaluation = [e for e in (evaluation_s(t) for t in done) if e is not None]
    joins = join_offsets_s(trials, started)
    return {
        "wall_s": wall_s,
        "complete": len(done),
        "span_s": span_s(done),
        "trials_per_min": trials_per_minute(done),
        "overhead_ms_median": _median_ms(overhead),
        "overhead_ms_mean": 1e3 * statistics.fmean(overhead) if overhead else None,
        "evaluation_ms_median": _median_ms(evaluation),
        "join_s": dict(sorted(joins.items(), key=lambda kv: kv[1])),
        "join_min_s": min(joins.values(), default=None),
        "join_max_s": max(joins.values(), default=None),
        "workers_seen": len(joins),
    }


MEDIAN_KEYS = (
    "wall_s",
    "trials_per_min",
    "span_s",
    "overhead_ms_median",
    "overhead_ms_mean",
    "evaluation_ms_median",
    "join_min_s",
    "join_max_s",
)


def median_of_runs(
    runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = MEDIAN_KEYS
) -> dict[str, Any]:
    """Per key, the median over the runs that have a value (None if none has)."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def _median_ms(seconds: Sequence[float]) -> float | None:
    return 1e3 * statistics.median(seconds) if seconds else None


def _start(trial: FrozenTrial) -> dt.datetime:
    assert trial.datetime_start is not None
    return trial.datetime_start


def _end(trial: FrozenTrial) -> dt.datetime:
    assert trial.datetime_complete is not None
    return trial.datetime_complete


# ------------------------------------------------------------------ running the command
@dataclass(frozen=True)
class Storage:
    """One kind of storage: its label and a fresh URL per run (in ``folder``)."""

    label: str
    fresh: Callable[[Path], str]


def journal_storage() -> Storage:
    return Storage(JOURNAL, lambda folder: str(folder / "studies.log"))


def postgres_storage(server: PostgresServer) -> Storage:
    major = server.version.split(".")[0]
    return Storage(f"{POSTGRES} {major} (local)", lambda _: server.create_database())


def command(storage_url: str, workers: int, trials: int, study: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dse.cli",
        "optimize",
        "--test-size",
        str(TEST_SIZE),
        "--sampler",
        SAMPLER,
        "--trials",
        str(trials),
        "--workers",
        str(workers),
        "--storage",
        storage_url,
        "--objectives",
        OBJECTIVES,
        "--study",
        study,
        "--out",
        str(out),
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ROBUSTDICE_CACHE", str(REPO / ".cache" / "robustdice"))  # no retraining
    return env


class Reader:
    """Reads a study while the commands may still write it, with a plain Optuna storage (no
    journal repair, unlike dse's `open_storage`), opened at the first read."""

    def __init__(self, storage_url: str) -> None:
        self.url = storage_url
        self._storage: Any = None

    @property
    def journal(self) -> bool:
        return self.url.endswith((".log", ".jsonl"))

    def create_tables(self) -> None:
        """On a database, Optuna's tables now, before any command runs: a reader that opens
        the database while a command creates them could make that command fail."""
        if not self.journal:
            self._storage = self._open(create=True)

    def trials(self, study: str) -> list[FrozenTrial]:
        """The study's trials; none while it does not exist."""
        try:
            if self._storage is None:
                self._storage = self._open(create=False)
            study_id = self._storage.get_study_id_from_name(study)
            return list(self._storage.get_all_trials(study_id, deepcopy=False))
        except KeyError:  # the study does not exist yet
            return []

    def _open(self, *, create: bool) -> Any:
        from optuna.storages import JournalStorage, RDBStorage
        from optuna.storages.journal import JournalFileBackend

        if self.journal:
            return JournalStorage(JournalFileBackend(self.url))
        return RDBStorage(self.url, skip_compatibility_check=True, skip_table_creation=not create)

    def close(self) -> None:
        """Close a database reader's connections (a journal reader holds none)."""
        engine = getattr(self._storage, "engine", None)
        if engine is not None:
            self._storage.remove_session()
            engine.dispose()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def one_run(storage: Storage, workers: int, folder: Path) -> dict[str, Any]:
    """One `dse optimize` of ``TRIALS`` trials on a fresh storage; what it measured."""
    url = storage.fresh(folder)
    log = folder / "optimize.out"
    load = os.getloadavg()[0]
    with log.open("w") as output:
        started = dt.datetime.now()  # trials' datetimes are naive local time too
        clock = time.perf_counter()
        done = subprocess.run(
            command(url, workers, TRIALS, "w", folder / "out"),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=REPO,
            timeout=RUN_TIMEOUT_S,
        )
        wall = time.perf_counter() - clock
    if done.returncode:
        raise RuntimeError(f"dse optimize exited {done.returncode}:\n{_tail(log)}")
    reader = Reader(url)
    try:
        row = run_row(reader.trials("w"), started, wall)
    finally:
        reader.close()
    if row["complete"] != TRIALS:
        raise RuntimeError(f"{row['complete']} COMPLETE trials, not {TRIALS}:\n{_tail(log)}")
    return {"storage": storage.label, "workers": workers, "load_1min": load, **row}


def second_command(storage: Storage, folder: Path) -> dict[str, Any]:
    """A second command joining a running study: from its start to its first trial's start."""
    url = storage.fresh(folder)
    reader = Reader(url)
    reader.create_tables()
    processes: list[subprocess.Popen[bytes]] = []
    load = os.getloadavg()[0]
    try:
        first = _start_command(url, folder, "first", processes)
        _wait_for(
            lambda: (
                first.poll() is not None
                or any(t.state == TrialState.COMPLETE for t in reader.trials("s"))
            )
        )
        if first.poll() is not None:
            raise RuntimeError(f"the first command exited:\n{_tail(folder / 'first')}")
        started = dt.datetime.now()
        second = _start_command(url, folder, "second", processes)
        joined: list[dt.datetime] = []

        def has_joined() -> bool:
            at = first_trial_of(reader.trials("s"), second.pid)
            if at is not None:
                joined.append(at)
            return at is not None or second.poll() is not None or first.poll() is not None

        _wait_for(has_joined)
        if not joined:
            raise RuntimeError(f"the second command ran no trial:\n{_tail(folder / 'second')}")
        return {
            "storage": storage.label,
            "load_1min": load,
            "join_s": (joined[0] - started).total_seconds(),
        }
    finally:
        _stop(processes)
        reader.close()


def _start_command(
    url: str, folder: Path, name: str, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with (folder / name).open("w") as output:
        process = subprocess.Popen(
            command(url, 1, SECOND_BUDGET, "s", folder / f"out-{name}"),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=REPO,
        )
    processes.append(process)
    return process


def _wait_for(condition: Callable[[], bool], timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing happened in {timeout_s:.0f} s")
        time.sleep(POLL_S)


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C for each command (it stops cleanly), killed if still running after a minute."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ the benchmark
def _check_names() -> None:
    """The attribute names read above are still those dse writes."""
    from dse import TrialRecord
    from dse._workers import WORKER_ATTR as DSE_WORKER_ATTR

    record = TrialRecord(replication_factor=1.0, latency_ms=0.0, provenance="x")
    if DSE_WORKER_ATTR != WORKER_ATTR or SECONDS_ATTR not in record.to_user_attrs():
        raise RuntimeError("dse renamed the trial attributes this benchmark reads")


@contextlib.contextmanager
def storages(postgres: bool, notes: list[str]) -> Iterator[list[Storage]]:
    """The storages to measure: the journal file, and PostgreSQL where it can start."""
    with contextlib.ExitStack() as stack:
        found = [journal_storage()]
        if not postgres:
            notes.append("PostgreSQL not measured (--no-postgres).")
        else:
            try:
                found.append(postgres_storage(stack.enter_context(postgres_server())))
            except (FileNotFoundError, RuntimeError, OSError) as err:
                notes.append(f"PostgreSQL skipped: {err}")
        yield found


def run(
    quick: bool = False,
    *,
    repeats: int | None = None,
    postgres: bool = True,
    second: bool = True,
) -> BenchResult:
    _check_names()
    repeats = repeats or (QUICK_REPEATS if quick else REPEATS)
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    seconds: list[dict[str, Any]] = []
    start = time.perf_counter()
    with storages(postgres, notes) as measured:
        for repetition in range(repeats):  # interleaved: drifts of the load hit all alike
            for storage in measured:
                for workers in WORKERS:
                    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
                        measured_run = one_run(storage, workers, Path(folder))
                    runs.append({"repetition": repetition, **measured_run})
                    console.print(
                        f"{storage.label}, {workers} worker(s), run {repetition + 1}: "
                        f"{measured_run['trials_per_min']:.0f} trials/min, "
                        f"{measured_run['wall_s']:.1f} s"
                    )
                if second:
                    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
                        joined = second_command(storage, Path(folder))
                    seconds.append({"repetition": repetition, **joined})
                    console.print(
                        f"{storage.label}, second command joins in {joined['join_s']:.1f} s"
                    )
        labels = [s.label for s in measured]
    rows = _rows(labels, runs, seconds)
    notes += [
        f"`dse optimize --test-size {TEST_SIZE} --sampler {SAMPLER} --trials {TRIALS} "
        f"--workers K --storage S --objectives {OBJECTIVES}`, a fresh storage per run, "
        f"medians of {repeats} run(s).",
        "trials/min: COMPLETE trials over the first one's start to the last one's end; "
        "overhead: a trial's duration minus its evaluation (`seconds` in its record), median "
        "over trials; eval: the evaluation itself; joins: from the command's start to each "
        "worker's first trial (K = 1: the command's own start-up); second command: started "
        "once the first has a COMPLETE trial, to its own first trial.",
        "a shared machine: load average at each run's start in the JSON (`load_1min`).",
    ]
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "repeats": repeats,
            "trials": TRIALS,
            "test_size": TEST_SIZE,
            "sampler": SAMPLER,
            "objectives": OBJECTIVES,
            "workers": list(WORKERS),
            "storages": labels,
            "second_command": second,
            "run_s": time.perf_counter() - start,
            "code": code_state(),
        },
        rows=rows,
        summary=_summary(rows),
        notes=notes,
    )


def _rows(
    labels: Sequence[str], runs: Sequence[dict[str, Any]], seconds: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for label in labels:
        joins = [s["join_s"] for s in seconds if s["storage"] == label]
        for workers in WORKERS:
            mine = [r for r in runs if r["storage"] == label and r["workers"] == workers]
            row: dict[str, Any] = {"storage": label, "workers": workers, "trials": TRIALS}
            row.update(median_of_runs(mine))
            if workers == 1 and joins:
                row["second_command_join_s"] = statistics.median(joins)
                row["second_command_join_s_runs"] = joins
                row["second_command_load_1min"] = [
                    s["load_1min"] for s in seconds if s["storage"] == label
                ]
            row["runs"] = mine
            rows.append(row)
    return rows


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Trials/min per storage and K, and what a second worker gains on each storage."""
    rate = {(r["storage"], r["workers"]): r["trials_per_min"] for r in rows}
    summary: dict[str, Any] = {
        "trials_per_min": {f"{s} x{k}": v for (s, k), v in rate.items()},
        "overhead_ms": {f"{r['storage']} x{r['workers']}": r["overhead_ms_median"] for r in rows},
    }
    summary["speedup_2_over_1"] = {
        storage: rate[storage, 2] / rate[storage, 1]
        for storage, k in rate
        if k == 1 and rate.get((storage, 2)) and rate[storage, 1]
    }
    return summary


COLUMNS = (
    "storage",
    "workers",
    "trials/min",
    f"wall s, {TRIALS} trials",
    "overhead ms/trial",
    "eval ms/trial",
    "worker joins in s",
    "second command joins in s",
)


def _joins(r: Mapping[str, Any]) -> str:
    low, high = r.get("join_min_s"), r.get("join_max_s")
    if low is None or high is None:
        return "-"
    return f"{low:.1f}" if r["workers"] == 1 else f"{low:.1f}-{high:.1f}"


def table(result: BenchResult) -> Table:
    title = (
        f"dse optimize --workers K, {TRIALS} trials, {TEST_SIZE} test images, "
        f"medians of {result.settings['repeats']}"
    )
    return make_table(
        title,
        COLUMNS,
        [
            [
                r["storage"],
                r["workers"],
                r["trials_per_min"],
                r["wall_s"],
                r["overhead_ms_median"],
                r["evaluation_ms_median"],
                _joins(r),
                r.get("second_command_join_s"),
            ]
            for r in result.rows
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per storage and K")
    parser.add_argument("--no-postgres", action="store_true", help="the journal file only")
    parser.add_argument(
        "--no-second", action="store_true", help="skip the second-command join time"
    )
    args = parser.parse_args(argv)
    result = run(
        quick=args.quick,
        repeats=args.repeats,
        postgres=not args.no_postgres,
        second=not args.no_second,
    )
    report(result, table(result))


if __name__ == "__main__":
    main()
