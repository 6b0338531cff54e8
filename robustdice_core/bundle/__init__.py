"""Deployable bundles (DESIGN 4, docs/bundle.md): a partition of a model as per-device
safetensors shards, a manifest with hashes, provenance and expected metrics, and the runtime's
configuration with one CURVE key pair per node.

Free of optuna, pandas and plotly (a board loads this package); no pickle is read anywhere.
"""

from __future__ import annotations

from robustdice_core.bundle._layout import (
    ScalarEntry,
    TensorLayout,
    TensorRole,
    TensorSpec,
    plan_layout,
)
from robustdice_core.bundle._manifest import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST_NAME,
    ExpectedMetrics,
    Manifest,
    Origin,
    WeightsInfo,
    read_manifest,
)
from robustdice_core.bundle._read import load_shard, read_runtime, reassemble
from robustdice_core.bundle._runtime_config import (
    DEFAULT_BASE_PORT,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_TIMEOUT_S,
    ClientAddress,
    NodeAddress,
    NodeConfig,
    NodeKeys,
    RuntimeConfig,
)
from robustdice_core.bundle._shards import shard_bytes, split_state
from robustdice_core.bundle._verify import VerifyReport, verify_bundle
from robustdice_core.bundle._write import (
    CLIENT_SECRET_NAME,
    NODE_NAME,
    RUNTIME_NAME,
    SECRET_NAME,
    SHARD_NAME,
    check_out_dir,
    device_dir,
    write_bundle,
)

__all__ = [
    "BUNDLE_FORMAT",
    "CLIENT_SECRET_NAME",
    "BUNDLE_VERSION",
    "DEFAULT_BASE_PORT",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_TIMEOUT_S",
    "MANIFEST_NAME",
    "NODE_NAME",
    "RUNTIME_NAME",
    "SECRET_NAME",
    "SHARD_NAME",
    "ClientAddress",
    "ExpectedMetrics",
    "Manifest",
    "NodeAddress",
    "NodeConfig",
    "NodeKeys",
    "Origin",
    "RuntimeConfig",
    "ScalarEntry",
    "TensorLayout",
    "TensorRole",
    "TensorSpec",
    "VerifyReport",
    "WeightsInfo",
    "check_out_dir",
    "device_dir",
    "load_shard",
    "plan_layout",
    "read_manifest",
    "read_runtime",
    "reassemble",
    "shard_bytes",
    "split_state",
    "verify_bundle",
    "write_bundle",
]
