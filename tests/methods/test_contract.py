"""Every registered method is checked the same way (scikit-learn's common tests, timm's registry tests)."""
import copy
import dataclasses

import pytest
import torch

from mumis.bench.experiment import apply_method
from mumis.errors import MumisError
from mumis.methods import DataAccessError, DataRole, MethodResult, get_method, grant, list_methods


@pytest.mark.parametrize("name", list_methods())
def test_declaration(name):
    method = get_method(name)
    assert method.name == name
    assert DataRole.FORGET in method.needs
    assert dataclasses.is_dataclass(method.Config)
    assert method.config_dict() == dataclasses.asdict(method.Config())
    with pytest.raises(MumisError, match="has no option"):
        get_method(name, not_an_option=1)


@pytest.mark.parametrize("name", list_methods())
def test_grant_refuses_undeclared_and_requires_declared_data(name, digits_task):
    method = get_method(name)
    offered = {"forget": digits_task.forget, "retain": digits_task.retain, "heldout": digits_task.test}
    for role in DataRole:
        if role not in method.needs and role.value in offered:
            with pytest.raises(DataAccessError):
                grant(method, **{r.value: offered[r.value] for r in method.needs}, **{role.value: offered[role.value]})
    if len(method.needs) > 1:
        with pytest.raises(MumisError, match="needs"):
            grant(method, forget=digits_task.forget)
    empty = digits_task.forget.subset([])
    with pytest.raises(MumisError, match="empty"):
        grant(method, **{r.value: (empty if r is DataRole.FORGET else offered[r.value]) for r in method.needs})


@pytest.mark.parametrize("name", list_methods())
def test_runs_on_tiny_real_data_without_touching_the_input(name, digits_model, digits_task):
    task = dataclasses.replace(digits_task, forget=digits_task.forget.subset(range(16)))
    before = copy.deepcopy(digits_model.state_dict())
    method = get_method(name, **({"show_progress": False} if "show_progress" in method_fields(name) else {}))
    result, data, _ = apply_method(method, digits_model, task)
    assert isinstance(result, MethodResult) and result.stop_reason
    assert data.reads <= {r.value for r in method.needs}
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    for k, v in digits_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} changed the caller's model"


def method_fields(name):
    return {f.name for f in dataclasses.fields(get_method(name).Config)}
