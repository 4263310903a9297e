from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import torch

from drivesim.core.config import ConfigError, apply_overrides, check_type, config_to_dict, join_path

torch.set_num_threads(1)


@dataclass(frozen=True)
class Inner:
    rate: float = 1.0
    steps: int = 3

    def validate_config(self, where: str = "inner") -> None:
        if self.rate < 0:
            raise ConfigError(f"{where}.rate: got {self.rate}; allowed: >= 0")


@dataclass(frozen=True)
class Outer:
    name: str = "a"
    flag: bool = False
    span: tuple[float, float] = (0.0, 1.0)
    tags: list[str] = field(default_factory=list)
    limit: Optional[float] = None
    mode: Literal["fast", "slow"] = "fast"
    inner: Inner = field(default_factory=Inner)


def test_overrides_replace_fields_and_keep_the_original():
    base = Outer()
    new = apply_overrides(base, {"name": "b", "span": [1, 2], "limit": 3, "inner": {"steps": 5}})
    assert new == Outer(name="b", span=(1.0, 2.0), limit=3.0, inner=Inner(steps=5))
    assert base == Outer()
    assert isinstance(new.span[0], float) and isinstance(new.limit, float)
    assert apply_overrides(base, None) == base


def test_unknown_key_names_path_allowed_keys_and_suggestion():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Outer(), {"nmae": "x"}, "run.model")
    msg = str(e.value)
    assert "run.model.nmae" in msg and "unknown key" in msg and "'name'" in msg
    assert "flag, inner, limit, mode, name, span, tags" in msg


def test_unknown_nested_key_has_full_path():
    with pytest.raises(ConfigError, match=r"cfg\.inner\.stepz: unknown key"):
        apply_overrides(Outer(), {"inner": {"stepz": 1}}, "cfg")


@pytest.mark.parametrize(
    "overrides, path, text",
    [
        ({"name": 3}, "cfg.name", "expected str"),
        ({"flag": 1}, "cfg.flag", "expected bool"),
        ({"inner": {"steps": 2.5}}, "cfg.inner.steps", "expected int"),
        ({"inner": {"steps": True}}, "cfg.inner.steps", "expected int"),
        ({"inner": {"rate": "fast"}}, "cfg.inner.rate", "expected float"),
        ({"span": [1.0]}, "cfg.span", "expected 2 values"),
        ({"span": 1.0}, "cfg.span", "expected tuple"),
        ({"span": [1.0, "x"]}, "cfg.span[1]", "expected float"),
        ({"tags": ["a", 2]}, "cfg.tags[1]", "expected str"),
        ({"limit": "none"}, "cfg.limit", "expected"),
        ({"mode": "medium"}, "cfg.mode", "one of ['fast', 'slow']"),
        ({"inner": 5}, "cfg.inner", "expected Inner"),
        ({"inner": {"rate": -1.0}}, "cfg.inner.rate", "allowed: >= 0"),
    ],
)
def test_bad_values_name_the_key_path(overrides, path, text):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Outer(), overrides, "cfg")
    assert str(e.value).startswith(path + ":"), str(e.value)
    assert text in str(e.value)


def test_non_mapping_and_non_dataclass():
    with pytest.raises(ConfigError, match="cfg: expected a mapping"):
        apply_overrides(Outer(), [("name", "x")], "cfg")
    with pytest.raises(TypeError):
        apply_overrides(Outer, {})


def test_check_type_and_helpers():
    assert check_type(2, float, "x") == 2.0 and isinstance(check_type(2, float, "x"), float)
    assert check_type(None, Optional[int], "x") is None
    assert check_type({"a": 1}, dict[str, float], "x") == {"a": 1.0}
    assert check_type([1, 2, 3], tuple[int, ...], "x") == (1, 2, 3)
    assert join_path("groups", 2) == "groups[2]" and join_path("groups[2]", "map") == "groups[2].map"
    assert join_path("", "name") == "name"
    assert config_to_dict(Outer()) == {"name": "a", "flag": False, "span": [0.0, 1.0], "tags": [], "limit": None,
                                       "mode": "fast", "inner": {"rate": 1.0, "steps": 3}}


def test_config_from_dict_builds_nested_configs_and_rejects_unknown_keys():
    from drivesim.render.refiner.train import TrainConfig

    cfg = TrainConfig()
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # lists come back as tuples
    assert back == cfg
    with pytest.raises(ValueError, match=r"unknown refiner config keys \['bogus'\]"):
        TrainConfig.from_dict({"refiner": {"bogus": 1}})
    with pytest.raises(ValueError, match="unknown refiner training config keys"):
        TrainConfig.from_dict({"epochs_typo": 1})
