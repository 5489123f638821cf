"""Unlearning methods: one file each, registered by name, each declaring the data it needs."""
from mumis.methods import mumis as _mumis  # noqa: F401  (registers)
from mumis.methods.base import (
    DataAccessError,
    DataRole,
    GrantedData,
    MethodResult,
    UnlearningMethod,
    grant,
    run_method,
)
from mumis.methods.mumis import MuMis, MuMisConfig, mumis_loss
from mumis.methods.registry import get_method, list_methods, register
from mumis.methods.stopping import DipRecoverRule

__all__ = [
    "DataAccessError", "DataRole", "DipRecoverRule", "GrantedData", "MethodResult", "MuMis", "MuMisConfig",
    "UnlearningMethod", "get_method", "grant", "list_methods", "mumis_loss", "register", "run_method",
]
