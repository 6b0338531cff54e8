"""The real runtime: separate node processes on loopback, pyzmq with CURVE, real signals.

The main test: with no failure the logits equal the unpartitioned model, and with nodes
stopped (SIGSTOP) they equal the failure simulation image by image (1e-4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq
from typer.testing import CliRunner

from dse.cli import app
from robustdice_core.bundle import CLIENT_SECRET_NAME, read_runtime
from runtime import Client, Fault, FaultKind, LaunchOptions, LocalMesh, encode
from runtime._simulate import simulated_logits
from runtime._wire import Input

from .cases import digits_images, make_bundle, masked_net, model

FAST = LaunchOptions(in_flight=4, timeout_s=0.5, heartbeat_s=0.1)
ALL = [(), (0,), (1,), (2,), (3,), (1, 2)]
SHORT = [(), (2,), (0, 3)]
CASES = [
    ("digits-alexnet", "lop", ALL),
    ("digits-alexnet", "robustdice", ALL),
    ("digits-alexnet", "cdc", ALL),
    ("digits-vgg-bn", "lop", SHORT),
    ("digits-vgg-bn", "robustdice", SHORT),
    ("digits-vgg-bn", "cdc", SHORT),
    ("digits-convnext", "lop", SHORT),
    ("digits-convnext", "robustdice", SHORT),
    ("digits-convnext", "cdc", SHORT),  # depthwise parity, decoded on the parity device
]


@pytest.mark.parametrize(("name", "method", "scenarios"), CASES, ids=lambda c: str(c))
def test_runtime_logits_equal_the_model_and_the_failure_simulation(
    name: str, method: str, scenarios: list[tuple[int, ...]], tmp_path: Path
) -> None:
    partition = make_bundle(tmp_path / "b", name, method)
    images, _ = digits_images(name, 24)
    net = masked_net(name)
    with LocalMesh(tmp_path / "b", FAST) as mesh:
        for failed in scenarios:
            for rank in failed:
                mesh.freeze(rank)
            mesh.wait_agreed(set(failed))
            result = mesh.stream(images)
            assert result.lost.size == 0, failed
            expected = simulated_logits(net, partition, failed, images)
            torch.testing.assert_close(
                torch.from_numpy(result.logits), expected, atol=1e-4, rtol=0, msg=str(failed)
            )
            for rank in failed:
                mesh.thaw(rank)
            mesh.wait_agreed(set())
    if not scenarios[0]:
        with torch.inference_mode():
            plain = model(name).module.eval()(images)
        torch.testing.assert_close(
            simulated_logits(net, partition, (), images), plain, atol=1e-5, rtol=0
        )


def test_a_killed_node_is_zero_filled_and_a_restarted_one_rejoins(tmp_path: Path) -> None:
    partition = make_bundle(tmp_path / "b", "digits-alexnet", "lop")
    images, _ = digits_images("digits-alexnet", 80)
    net = masked_net("digits-alexnet")
    with LocalMesh(tmp_path / "b", FAST) as mesh:
        first = mesh.stream(images[:50], faults=[Fault(FaultKind.FAIL, 1, 20)])
        assert first.lost.size == 0
        # once node 1 is known down, its share is zero, as simulated
        tail = simulated_logits(net, partition, (1,), images[35:50])
        torch.testing.assert_close(torch.from_numpy(first.logits[35:]), tail, atol=1e-4, rtol=0)
        mesh.restart(1)
        mesh.wait_agreed(set())
        second = mesh.stream(images[50:])
        with torch.inference_mode():
            whole = model("digits-alexnet").module.eval()(images[50:])
        torch.testing.assert_close(torch.from_numpy(second.logits), whole, atol=1e-4, rtol=0)
        lives = mesh.stop()
    node1 = [life for life in lives if life.rank == 1]
    assert [life.ended_by for life in node1] == ["fail", "stop"]
    assert node1[1].report is not None and node1[1].report["stats"]["images_answered"] > 0


def test_dse_run_reports_fault_detection_and_writes_json(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b", "digits-alexnet", "robustdice")
    out = tmp_path / "run.json"
    args = ["run", str(tmp_path / "b"), "--local", "--images", "60", "--fail", "2@30",
            "--timeout", "0.5", "--heartbeat", "0.1", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "after fail 2@30" in result.output
    data = json.loads(out.read_text())
    assert data["answered"] == 60 and data["lost"] == 0
    assert [s["failed"] for s in data["segments"]] == [[], [2]]
    delay = data["faults"][0]["detection_delay_s"]
    # silence is counted from the last heartbeat heard, at most one interval before the kill:
    # within [timeout - interval, timeout + interval] (+ scheduling slack on a busy machine)
    assert 0.5 - 0.1 <= delay <= 0.5 + 0.1 + 0.5
    assert data["nodes"][2]["exit"] == "killed"
    assert abs(data["segments"][0]["top1_pct"] - data["segments"][0]["simulated_top1_pct"]) < 1e-3


def test_bad_fault_and_missing_local_are_one_line_errors(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b", "digits-alexnet", "lop")
    runner = CliRunner()
    bad = runner.invoke(app, ["run", str(tmp_path / "b"), "--local", "--fail", "1-20"])
    assert bad.exit_code != 0 and "RANK@IMAGE" in str(bad.exception or bad.output)
    remote = runner.invoke(app, ["run", str(tmp_path / "b")])
    assert remote.exit_code != 0 and "--local" in str(remote.exception or remote.output)


def test_a_process_without_the_keys_can_neither_join_nor_inject(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b", "digits-alexnet", "lop")
    images, _ = digits_images("digits-alexnet", 8)
    with LocalMesh(tmp_path / "b", FAST) as mesh:
        target = mesh.runtime.nodes[0]
        rogue_public, rogue_secret = zmq.curve_keypair()
        context = zmq.Context()
        pushes = []
        for curve in (True, False):
            push = context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            if curve:  # its own keys, the node's real public key
                push.curve_publickey, push.curve_secretkey = rogue_public, rogue_secret
                push.curve_serverkey = target.public_key.encode()
            push.connect(target.data)
            pushes.append(push)
        sub = context.socket(zmq.SUB)
        sub.curve_publickey, sub.curve_secretkey = rogue_public, rogue_secret
        sub.curve_serverkey = target.public_key.encode()
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(target.heartbeat)
        frames = encode(Input(10**6, 0, images[:1].numpy()))
        for push in pushes:
            for _ in range(5):
                try:
                    push.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
        assert sub.poll(1000) == 0  # no heartbeat reaches an unknown key
        result = mesh.stream(images)
        assert result.lost.size == 0
        lives = mesh.stop()
        context.destroy(linger=0)
    report = next(life.report for life in lives if life.rank == 0)
    assert report is not None
    assert report["denied_connections"] >= 2  # the rogue PUSH and SUB
    assert report["stats"]["images_started"] == len(images)  # the rogue input never arrived


def test_robustdice_node_command_fails_with_one_clear_line(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b", "digits-alexnet", "lop")
    shard = tmp_path / "b" / "device-1" / "weights.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")
    for rank, wanted in ((7, "not 7"), (1, "does not match")):
        done = subprocess.run(
            [sys.executable, "-m", "runtime", "node", str(tmp_path / "b"), "--rank", str(rank)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and wanted in lines[0], done.stderr


def test_nodes_start_from_the_bundle_alone(tmp_path: Path) -> None:
    """`robustdice-node` with the bundle's own addresses: what a board runs."""
    make_bundle(tmp_path / "b", "digits-alexnet", "replication", nd=2)
    runtime = read_runtime(tmp_path / "b")
    assert [n.data for n in runtime.nodes][0].startswith("tcp://127.0.0.1:")
    procs = [
        subprocess.Popen([sys.executable, "-m", "runtime", "node", str(tmp_path / "b"), "--rank",
                          str(r), "--report", str(tmp_path / f"r{r}.json")])
        for r in range(2)
    ]  # fmt: skip
    client = Client(runtime, (tmp_path / "b" / CLIENT_SECRET_NAME).read_text().strip())
    try:
        client.wait_ready(120)  # both nodes beat: loaded, bound, connected
        assert all(p.poll() is None for p in procs)
    finally:
        client.close()
        for p in procs:
            p.terminate()
        codes = [p.wait(60) for p in procs]
    assert codes == [0, 0]
    reports = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(2)]
    assert all(np.isfinite(r["peak_rss_bytes"]) for r in reports)
