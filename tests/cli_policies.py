"""Policies of a careful user's mistakes, loaded by the CLI tests as `tests.cli_policies:Class`."""

import torch


class Stopping:
    """A valid policy: brakes gently, steers straight."""

    name = "stopping"

    def reset(self, batch) -> None:
        pass

    def act(self, obs) -> torch.Tensor:
        return torch.tensor([[-1.0, 0.0]]).expand(obs.state.batch_size, 2).clone()


class CallsItselfTheExpert(Stopping):
    name = "pdm_expert"


class Raising(Stopping):
    name = "raising"

    def act(self, obs) -> torch.Tensor:
        raise RuntimeError("this policy always fails")


class NeedsArguments(Stopping):
    def __init__(self, horizon):
        self.horizon = horizon


class RaisesInInit(Stopping):
    def __init__(self):
        raise RuntimeError("no weights found")


class NotAPolicy:
    name = "not_a_policy"
