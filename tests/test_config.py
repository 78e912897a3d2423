"""Specs as JSON data (spec.config): every zoo model and small spec comes back equal, and a config
that names an unknown class or field is refused naming it."""

from __future__ import annotations

import json

import pytest

from spec.cases import SMALL
from spec.config import from_config, spec_from_config, to_config
from spec.errors import SpecError
from spec.models import get_model
from spec.models.zoo import ZOO

SPECS = {**ZOO, **SMALL}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_spec_comes_back_from_json_equal(name: str) -> None:
    spec = SPECS[name]
    text = json.dumps(to_config(spec))
    assert spec_from_config(json.loads(text)) == spec


def test_tuples_stay_tuples_and_layers_stay_layers() -> None:
    cnn = SPECS["digits_cnn"]
    config = to_config(cnn)
    assert config["class"] == "CNNSpec" and config["layers"]["tuple"][0]["class"] == type(cnn.layers[0]).__name__
    back = from_config(json.loads(json.dumps(config)))
    assert isinstance(back.layers, tuple) and isinstance(back.layers[0].kernel_size, tuple)


def test_a_config_naming_what_a_spec_is_not_made_of_is_refused() -> None:
    config = to_config(get_model("digits_mlp"))
    with pytest.raises(SpecError, match=r"config\.class: got 'os\.system'"):
        from_config({**config, "class": "os.system"})
    with pytest.raises(SpecError, match="config of MLPSpec"):
        from_config({**config, "weights": 3})
    with pytest.raises(SpecError, match="a model spec"):
        spec_from_config({"class": "Dense", "units": 3, "use_bias": True})
    with pytest.raises(SpecError, match="tuples as"):
        from_config([1, 2])
