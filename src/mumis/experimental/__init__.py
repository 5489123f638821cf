"""Methods kept to reproduce studies, not offered by the product: importing this package registers them.

``mumis_study`` (every MU-Mis variant of the variants grid) and ``newton_study`` (the all-layer Newton step's
settings as options). Each can say which product configuration, if any, behaves as one of its configurations
(:func:`product_equivalent`), which is how ``benchmarks/auto_table.py`` turns the grid into the ``auto`` table.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from mumis.experimental.mumis_study import MuMisStudy, MuMisStudyConfig, study_loss
from mumis.experimental.newton_study import NewtonStudy, NewtonStudyConfig

__all__ = ["MuMisStudy", "MuMisStudyConfig", "NewtonStudy", "NewtonStudyConfig", "product_equivalent", "study_loss"]


def product_equivalent(method: str, options: dict) -> Optional[tuple[str, dict]]:
    """The product method and options that run the study configuration ``method(**options)``, or None when the
    product does not offer it. MU-Mis: the product accepts the options (the study's default also watches a loss
    plateau, which never fired on the grid). newton: the study's settings resolve to the product's ScanSettings."""
    from mumis.errors import MumisError
    from mumis.methods import get_method
    from mumis.methods.mumis import MuMisConfig
    from mumis.methods.newton import ScanSettings

    if method == "mumis_study":
        try:
            product = get_method("mumis", **options).config
        except MumisError:  # an option the product does not have
            return None
        study = get_method("mumis_study", **options).config
        same_stop = {"loss_plateau": "forget_acc"}.get(study.stop, study.stop) == product.stop
        # the study checks a forget-accuracy floor under any stop rule, the product only under its own; a floor no
        # higher than the product's default is never reached by a sample request (its held-out guard stops first)
        same_floor = product.stop == "forget_acc" or study.fa_floor is None or study.fa_floor <= MuMisConfig.fa_floor
        unread = {"stop"} | ({"fa_floor", "stall_passes"} if product.stop != "forget_acc" else set())
        shared = [f.name for f in dataclasses.fields(product) if f.name not in unread]
        if same_stop and same_floor and all(getattr(study, f) == getattr(product, f) for f in shared):
            return "mumis", dict(options)
        return None
    if method == "newton_study":
        study = get_method("newton_study", **options)
        switches = set(options) - set(get_method("newton").config_dict())
        if options.get("layers", "head") == "all" and study.scan != ScanSettings():
            return None
        return "newton", {k: v for k, v in options.items() if k not in switches}
    return method, dict(options)
