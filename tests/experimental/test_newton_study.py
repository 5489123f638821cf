"""The study's newton: the all-layer step's settings as options, each refused where it cannot apply."""
import pytest

import mumis.experimental  # noqa: F401 — registers newton_study
from mumis.errors import MumisError
from mumis.experimental import product_equivalent
from mumis.methods import get_method
from mumis.methods.newton import ScanSettings


@pytest.mark.parametrize("options,message", [
    ({"reproject": True}, "layers=all and keep_class_losses=true"),
    ({"reproject": True, "layers": "all", "keep_class_losses": False}, "layers=all and keep_class_losses=true"),
    ({"match_accuracy": True}, "needs layers=all"),
    ({"curvature": "ekfac"}, "needs layers=all"),
    ({"curvature": "exact", "layers": "all"}, "not one of 'kfac', 'ekfac'"),
])
def test_all_layer_options_are_refused_without_the_all_layer_step(options, message):
    with pytest.raises(MumisError, match=message):
        get_method("newton_study", **options)


def test_scan_resolution_must_be_positive():
    with pytest.raises(MumisError, match="scan_resolution=0"):
        get_method("newton_study", layers="all", scan_resolution=0)


def test_the_study_resolves_to_the_products_settings_only_where_they_agree():
    assert get_method("newton_study", layers="all").scan == get_method("newton", layers="all").scan == ScanSettings()
    assert product_equivalent("newton_study", {"layers": "all", "reproject": True, "match_accuracy": True,
                                               "curvature": "ekfac"}) == ("newton", {"layers": "all"})
    assert product_equivalent("newton_study", {"layers": "all", "curvature": "kfac"}) is None
    assert product_equivalent("newton_study", {"layers": "all", "scan_resolution": 4}) is None
    assert product_equivalent("mumis_study", {}) == ("mumis", {})  # the study's default is the product's
    assert product_equivalent("mumis_study", {"variant": "paper"}) == ("mumis", {"variant": "paper"})
    assert product_equivalent("mumis_study", {"variant": "paper", "fa_floor": 10.0}) is None  # a floor under dip_recover
    assert product_equivalent("mumis_study", {"variant": "bounded"}) is None
