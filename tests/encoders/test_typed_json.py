"""The JSON field checker against the dataclasses it reads: every annotation kind, pass and fail."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from encoders.store import EncoderConfig
from encoders.typed_json import FieldError, typed_dict, typed_fields


@dataclass
class Inner:
    name: str
    n: int


@dataclass
class Record:
    key: str
    count: int
    scale: float = 1.0
    flag: bool = False
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sizes: tuple[int, ...] = ()
    maybe: str | None = None
    mode: Literal["a", "b"] = "a"
    extra: dict = field(default_factory=dict)
    inner: list[Inner] = field(default_factory=list)


def test_well_typed_record_is_converted():
    d = {"key": "k", "count": 3, "scale": 2, "mean": [1, 2.5, 3], "sizes": [1, 2], "maybe": None, "mode": "b",
         "inner": [{"name": "x", "n": 1}], "unknown": object()}
    r = Record(**typed_fields(Record, d))
    assert r.scale == 2.0 and r.mean == (1.0, 2.5, 3.0) and r.sizes == (1, 2) and r.inner == [Inner("x", 1)]


@pytest.mark.parametrize("change, message", [
    ({"count": True}, "count should be int, not bool"),
    ({"count": "3"}, "count should be int, not str"),
    ({"scale": float("nan")}, "scale should be a finite number"),
    ({"flag": 1}, "flag should be bool, not int"),
    ({"mean": [1, 2]}, "mean should be 3 numbers"),
    ({"mean": [1, 2, "x"]}, "mean[2] should be a finite number"),
    ({"sizes": [1, 2.5]}, "sizes[1] should be int, not float"),
    ({"maybe": 3}, "maybe should be str, not int"),
    ({"mode": "c"}, "mode should be one of 'a', 'b'"),
    ({"extra": []}, "extra should be dict, not list"),
    ({"inner": [{"name": "x"}]}, "inner[0]: lacks n"),
    ({"inner": ["x"]}, "inner[0] should be a JSON object"),
])
def test_badly_typed_fields_are_named(change, message):
    with pytest.raises(FieldError, match=message.replace("[", r"\[").replace("]", r"\]")):
        typed_fields(Record, {"key": "k", "count": 1, **change})


def test_fields_without_default_are_required():
    with pytest.raises(FieldError, match="lacks count"):
        typed_fields(Record, {"key": "k"})
    with pytest.raises(FieldError, match="not a JSON object"):
        typed_fields(Record, [1])


def test_encoder_config_round_trips_every_field():
    """New EncoderConfig fields are checked from their annotations, with no list to update."""
    import json
    from dataclasses import asdict

    cfg = EncoderConfig(backbone="smallcnn", feat_dim=256, image_size=24, method="simclr", training={"lr": 0.1})
    assert EncoderConfig.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg


def test_typed_dict_for_records_without_a_dataclass():
    assert typed_dict({"step": 3, "x": 1}, {"step": int}) == {"step": 3}
    with pytest.raises(FieldError, match="lacks model"):
        typed_dict({"step": 3}, {"step": int, "model": dict})
    with pytest.raises(FieldError, match="step should be int, not str"):
        typed_dict({"step": "3"}, {"step": int})
