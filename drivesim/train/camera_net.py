"""A driving policy that sees through the cameras: six surround images (splat or refined), the ego
speed and the route ahead in, the same trajectory vocabulary and decoding as the vector policy
out (train/policy_net.py: acceleration logits [B, K], lateral-option logits [B, L], a value).

`CameraPolicyNet` runs one small CNN with shared weights over every camera (a learned embedding
per camera slot says which one it is: the rig's extrinsics are fixed per rig), pools each image
to a vector, fuses the six with an MLP, and joins the ego speed and the route points (the route
command) before the heads. Its input is `camera_features(obs)`: `obs.cameras` [B, C, H, W, 3]
(rendered on first access, by the renderer the rollout was given) scaled to [-1, 1], the speed
and the route, nothing else of the privileged vector observation. `NetPolicy` drives it like the
vector net: the decision's plan is a trajectory the simulator's controller tracks.

Sized for one CPU thread: at 6 x 64 x 112 a forward pass is a few milliseconds, against hundreds
for the CPU splat render of the frames (`tests/train/test_camera_net.py` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from drivesim.core.checkpoint import CheckpointError, tensors_sha256
from drivesim.core.config import ConfigError, apply_overrides, config_to_dict, tuples_from_json
from drivesim.core.safe_io import atomic_torch_save
from drivesim.sim.observation import ObservationConfig
from drivesim.train.policy_net import ACCEL_BINS, NetPolicy, read_checkpoint
from drivesim.train.vocabulary import VocabularyConfig

FORMAT = "drivesim-camera-policy/1"


@dataclass(frozen=True)
class CameraNetConfig:
    cameras: int = 6  # camera slots of the rig, in rig order
    width: int = 112  # image size the net was built for (any size runs: the CNN pools globally)
    height: int = 64
    channels: tuple[int, ...] = (16, 32, 64)  # CNN widths, each conv halves the image
    hidden: int = 128
    accel_bins: tuple = ACCEL_BINS
    vocab: VocabularyConfig = field(default_factory=VocabularyConfig)
    decode: str = "mean"  # as PolicyNetConfig.decode
    obs: ObservationConfig = field(default_factory=ObservationConfig)  # route points of the route command

    def validate_config(self, where: str = "camera_policy") -> None:
        if self.cameras < 1 or self.hidden < 1 or not self.channels or min(self.channels) < 1:
            raise ConfigError(f"{where}: cameras, hidden and every channel width must be >= 1")
        if min(self.width, self.height) < 2 ** len(self.channels):
            raise ConfigError(f"{where}: images of {self.width}x{self.height} are too small for {len(self.channels)} "
                              "halving convolutions")
        self.vocab.validate_config(f"{where}.vocab")


def camera_features(obs) -> dict[str, torch.Tensor]:
    """What the camera policy sees: images [B, C, 3, H, W] in [-1, 1], speed [B, 1] (/20 m/s),
    route points [B, 2R] (/50 m), from an Observation whose rollout was given cameras."""
    images = obs.cameras.permute(0, 1, 4, 2, 3) * 2.0 - 1.0
    return {"cameras": images, "speed": obs.ego[:, :1] / 20.0, "route": obs.route.flatten(1) / 50.0}


class CameraPolicyNet(nn.Module):
    def __init__(self, cfg: CameraNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CameraNetConfig()
        cfg.validate_config()
        layers, c_in = [], 3
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.ReLU()]
            c_in = c
        self.cnn = nn.Sequential(*layers)
        self.slot = nn.Parameter(torch.zeros(cfg.cameras, c_in))  # which camera an image came from
        h = cfg.hidden
        self.fuse = nn.Sequential(nn.Linear(cfg.cameras * c_in, h), nn.ReLU())
        self.route = nn.Sequential(nn.Linear(cfg.obs.route_points * 2 + 1, h), nn.ReLU())
        self.trunk = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.pi = nn.Linear(h, len(cfg.accel_bins))
        self.lat = nn.Linear(h, len(cfg.vocab.lateral))
        self.v = nn.Linear(h, 1)

    features = staticmethod(camera_features)

    def forward(self, f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(acceleration logits [B, K], lateral logits [B, L], value [B]) from `camera_features`;
        lateral options not allowed (`f["lat_mask"]`) get -inf-like logits."""
        images = f["cameras"]
        B, C = images.shape[:2]
        if C != self.cfg.cameras:
            raise ValueError(f"camera policy built for {self.cfg.cameras} cameras, got {C}")
        pooled = self.cnn(images.flatten(0, 1)).mean(dim=(2, 3)).view(B, C, -1) + self.slot  # [B, C, c]
        z = torch.cat([self.fuse(pooled.flatten(1)), self.route(torch.cat([f["route"], f["speed"]], -1))], -1)
        z = self.trunk(z)
        lat = self.lat(z)
        if "lat_mask" in f:
            lat = lat.masked_fill(~f["lat_mask"], -1e4)
        return self.pi(z), lat, self.v(z).squeeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_camera_policy(net: CameraPolicyNet, path, card: dict | None = None) -> Path:
    """Weights + config + card in one file (written atomically); the card gets the weights' hash."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    card = {"format": FORMAT, **(card or {}), "config": config_to_dict(net.cfg), "weights_sha256": tensors_sha256(state)}
    return atomic_torch_save({"state_dict": state, "card": card}, Path(path))


def camera_policy_from_checkpoint(path, state: dict, card: dict, name: str | None = None) -> NetPolicy:
    """The camera NetPolicy (`needs_cameras`) of a checked checkpoint's (state, card)."""
    try:
        net = CameraPolicyNet(apply_overrides(CameraNetConfig(), tuples_from_json(card["config"]), where=f"{path}: config"))
        net.load_state_dict(state)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().split("\n")[0][:300]
        raise CheckpointError(f"{path}: the weights or config do not fit the camera policy ({reason})") from None
    policy = NetPolicy(net.eval(), name=name or card.get("name", "camera_policy"))
    policy.card, policy.needs_cameras = card, True
    return policy


def load_camera_policy(path, name: str | None = None) -> NetPolicy:
    """A camera policy checkpoint, checked as plain data by `policy_net.read_checkpoint` (finite
    weights matching the card's hash), else a CheckpointError."""
    return camera_policy_from_checkpoint(path, *read_checkpoint(path, (FORMAT,), ("config",)), name=name)
