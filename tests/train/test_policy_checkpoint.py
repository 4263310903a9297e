"""Malformed and crafted policy checkpoints are clear errors naming the file (issue 14 items 1, 3, 6)."""

from __future__ import annotations

import pytest
import torch

from drivesim.core.checkpoint import CheckpointError, tensors_sha256
from drivesim.train.policy_net import PolicyNet, PolicyNetConfig, load_policy, save_policy
from drivesim.train.policies import make_policy
from tests.payloads import Touch, assert_payload_works


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    return save_policy(PolicyNet(PolicyNetConfig(hidden=8)), tmp_path / "p.pt", {"name": "tiny"})


def _blob(path):
    return torch.load(path, weights_only=True)


def _rewrite(path, blob, rehash=True):
    if rehash and isinstance(blob.get("card"), dict):
        blob["card"]["weights_sha256"] = tensors_sha256(blob["state_dict"])
    torch.save(blob, path)
    return path


def _refused(path, match):
    with pytest.raises(CheckpointError, match=match) as err:
        load_policy(path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)
    return str(err.value)


def test_round_trip_verifies_the_hash(saved):
    policy = load_policy(saved)
    assert policy.name == "tiny" and policy.card["weights_sha256"] == tensors_sha256(policy.net.state_dict())


def test_flipped_weight_bits_fail_the_hash(saved):
    blob = _blob(saved)
    w = blob["state_dict"]["pi.weight"]
    w.view(torch.int32)[0, 0] ^= 1 << 3  # one bit of one weight, as a disk or a transfer would flip it
    _refused(_rewrite(saved, blob, rehash=False), r"do not match the card's weights_sha256")


def test_flipped_bits_anywhere_never_give_a_raw_error(saved):
    data = bytearray(saved.read_bytes())
    for pos in range(64, len(data), max(1, len(data) // 97)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        saved.write_bytes(bad)
        try:
            load_policy(saved)
        except CheckpointError as exc:
            assert str(saved) in str(exc) and "weights_only" not in str(exc)
        # anything else (a raw KeyError, RuntimeError, UnicodeDecodeError ...) fails the test


def test_truncated_file(saved):
    saved.write_bytes(saved.read_bytes()[:500])
    _refused(saved, "corrupt or truncated")


def test_a_tensor_instead_of_a_dict(saved):
    torch.save(torch.zeros(3), saved)
    _refused(saved, "holds a Tensor, not a dict")


def test_a_card_that_is_a_string(saved):
    blob = _blob(saved)
    blob["card"] = "drivesim-policy/1"
    _refused(_rewrite(saved, blob), "the card is a str, not a dict")


def test_wrong_weight_shapes_with_a_valid_card(saved):
    blob = _blob(saved)
    blob["state_dict"]["pi.weight"] = torch.zeros(5, 8)
    msg = _refused(_rewrite(saved, blob), "do not fit the network")
    assert "pi.weight (5, 8)" in msg


def test_nan_weights_with_a_valid_card(saved):
    blob = _blob(saved)
    blob["state_dict"]["trunk.0.weight"][0, 0] = float("nan")
    _refused(_rewrite(saved, blob), r"NaN or infinite weights in \['trunk.0.weight'\]")


def test_missing_hash_loads_with_a_warning(saved):
    blob = _blob(saved)
    del blob["card"]["weights_sha256"]
    _rewrite(saved, blob, rehash=False)
    with pytest.warns(UserWarning, match="no weights_sha256"):
        load_policy(saved)


def test_crafted_checkpoint_is_refused_and_never_runs(saved, tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    blob = _blob(saved)
    blob["card"]["name"] = Touch(marker)
    torch.save(blob, saved)
    msg = _refused(saved, "not plain data.*could run code")
    assert "it names" in msg and not marker.exists()
    with pytest.raises(CheckpointError, match="p.pt"):
        make_policy(str(saved))
    assert not marker.exists()


def test_shipped_policies_load_with_their_hash():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "policies"
    for name in ("il_base.pt", "rl_rare.pt"):
        policy = load_policy(root / name)
        assert policy.card["weights_sha256"] == tensors_sha256(policy.net.state_dict())
