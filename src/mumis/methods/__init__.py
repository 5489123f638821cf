"""Unlearning methods: one file each, registered by name, each declaring the data it needs."""
# importing a method's module registers it; one file per method
from mumis.methods import (  # noqa: F401
    bad_teacher,
    boundary_shrink,
    ft,
    ga,
    jit,
    l1_sparse,
    mumis,
    newton,
    original,
    retrain,
    rl,
    salun,
    scar,
    scrub,
    ssd,
)
from mumis.methods.base import (
    DataAccessError,
    DataRole,
    GrantedData,
    MethodResult,
    UnlearningMethod,
    grant,
    raise_if_diverged,
    run_method,
)
from mumis.methods.mumis import MuMis, MuMisConfig, mumis_loss
from mumis.methods.registry import get_method, list_methods, method_options, quiet_method, register
from mumis.methods.stopping import DipRecoverRule

__all__ = [
    "DataAccessError", "DataRole", "DipRecoverRule", "GrantedData", "MethodResult", "MuMis", "MuMisConfig",
    "UnlearningMethod", "get_method", "grant", "list_methods", "method_options", "quiet_method", "mumis_loss", "raise_if_diverged", "register", "run_method",
]
