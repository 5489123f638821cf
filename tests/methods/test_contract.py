"""Every registered method is checked the same way (scikit-learn's common tests, timm's registry tests)."""
import copy
import dataclasses

import pytest
import torch

from mumis.bench.experiment import apply_method
from mumis.errors import MumisError
from mumis.methods import (
    DataAccessError,
    DataRole,
    MethodResult,
    get_method,
    grant,
    list_methods,
)


@pytest.mark.parametrize("name", list_methods())
def test_declaration(name):
    method = get_method(name)
    assert method.name == name
    assert method.needs <= set(DataRole)
    assert dataclasses.is_dataclass(method.Config)
    assert method.config_dict() == dataclasses.asdict(method.Config())
    with pytest.raises(MumisError, match="has no option"):
        get_method(name, not_an_option=1)


@pytest.mark.parametrize("name", list_methods())
def test_grant_refuses_undeclared_and_requires_declared_data(name, digits_task, digits_surrogate):
    method = get_method(name)
    offered = {"forget": digits_task.forget, "retain": digits_task.retain, "heldout": digits_task.test,
               "surrogate": digits_surrogate}
    for role in DataRole:
        if role not in method.needs and role.value in offered:
            with pytest.raises(DataAccessError):
                grant(method, **{r.value: offered[r.value] for r in method.needs}, **{role.value: offered[role.value]})
    if len(method.needs) > 1:
        with pytest.raises(MumisError, match="needs"):
            grant(method, forget=digits_task.forget)
    if DataRole.FORGET in method.needs:
        empty = digits_task.forget.subset([])
        with pytest.raises(MumisError, match="empty"):
            grant(method, **{r.value: (empty if r is DataRole.FORGET else offered[r.value]) for r in method.needs})


class _Poisoned:
    """Stands in for data a method must never see: any use at all fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"undeclared data was touched (.{name})")

    def __len__(self):
        raise AssertionError("undeclared data was touched (len)")


@pytest.mark.parametrize("name", list_methods())
def test_undeclared_roles_are_never_touched(name, digits_model, digits_task, digits_surrogate):
    """Run every method on a task whose undeclared roles are poisoned: a retain-free method never reaches D_r."""
    method = get_method(name, **({"show_progress": False} if "show_progress" in method_fields(name) else {}))
    small = dataclasses.replace(digits_task, forget=digits_task.forget.subset(range(16)))
    roles = {"forget": small.forget, "retain": small.retain}
    poisoned = dataclasses.replace(small, **{k: (v if DataRole(k) in method.needs else _Poisoned()) for k, v in roles.items()})
    surrogate = digits_surrogate if DataRole.SURROGATE in method.needs else _Poisoned()
    result, data, _ = apply_method(method, digits_model, poisoned, surrogate)
    assert data.reads <= {r.value for r in method.needs}
    if method.retain_free:
        assert "retain" not in data.reads


@pytest.mark.parametrize("name", list_methods())
def test_runs_on_tiny_real_data_without_touching_the_input(name, digits_model, digits_task, digits_surrogate):
    task = dataclasses.replace(digits_task, forget=digits_task.forget.subset(range(16)))
    before = copy.deepcopy(digits_model.state_dict())
    method = get_method(name, **({"show_progress": False} if "show_progress" in method_fields(name) else {}))
    result, data, _ = apply_method(method, digits_model, task, digits_surrogate)
    assert isinstance(result, MethodResult) and result.stop_reason
    assert data.reads <= {r.value for r in method.needs}
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    for k, v in digits_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} changed the caller's model"


def method_fields(name):
    return {f.name for f in dataclasses.fields(get_method(name).Config)}
