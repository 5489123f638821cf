"""The training fast path (autocast, channels_last, data on the device, torch.compile) runs on the CPU too."""
import pytest
import torch

from mumis.metrics import accuracy
from mumis.models import create_model
from mumis.runtime import fast_path
from mumis.training import TrainRecipe, fit


def test_cpu_defaults_take_the_plain_path(monkeypatch):
    for name in ("MUMIS_AMP", "MUMIS_CHANNELS_LAST", "MUMIS_COMPILE", "MUMIS_DATA_ON_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUMIS_DEVICE", "cpu")
    fast = fast_path()
    assert (fast.amp, fast.channels_last, fast.compile, fast.data_on_device) == ("off", False, "off", False)
    assert fast.compile_backend(10**6) is None


def test_compile_auto_only_for_long_runs(monkeypatch):
    monkeypatch.setenv("MUMIS_COMPILE", "auto")
    fast = fast_path()
    assert fast.compile_backend(100) is None and fast.compile_backend(10**5) == "inductor"


@pytest.mark.parametrize("name,value", [("MUMIS_AMP", "fp8"), ("MUMIS_CHANNELS_LAST", "yes")])
def test_bad_switch_values_name_the_fix(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        fast_path()


def test_every_switch_on_still_trains_on_cpu(monkeypatch, digits_bundle, digits_split):
    monkeypatch.setenv("MUMIS_AMP", "bf16")
    monkeypatch.setenv("MUMIS_CHANNELS_LAST", "1")
    monkeypatch.setenv("MUMIS_DATA_ON_DEVICE", "1")
    monkeypatch.setenv("MUMIS_COMPILE", "eager")  # TorchDynamo capture without a C++ toolchain: fast on CI
    train, test = digits_split.materialise(digits_bundle)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    report = fit(model, train, TrainRecipe(epochs=2, batch_size=64), seed=0, show_progress=False)
    assert torch.isfinite(torch.tensor(report.final_loss))
    assert accuracy(model, test) > 80
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous()  # handed back in the layout MU-Mis and the metrics use
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never changes the stored weights


def test_multistep_schedule_matches_pytorch():
    recipe = TrainRecipe(epochs=10, lr=0.1, schedule="multistep", milestones=(3, 6), gamma=0.2, warmup_epochs=0)
    per_epoch, total = 4, 40
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 6], gamma=0.2)
    for epoch in range(10):
        for i in range(per_epoch):
            step = epoch * per_epoch + i
            assert recipe.lr * recipe.lr_factor(step, total, 0, per_epoch) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert "milestones" not in TrainRecipe().to_dict()  # older recipes keep their hash
    with pytest.raises(ValueError, match="milestones"):
        TrainRecipe(schedule="multistep")


def test_double_backward_runs_in_true_float32_and_restores_the_training_setting():
    from mumis.runtime import double_backprop_kernels

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # a GPU training setting
        with double_backprop_kernels():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(RuntimeError), double_backprop_kernels():  # restored on the way out of an error too
            raise RuntimeError("boom")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_double_backward_keeps_tf32_only_when_the_user_asks(monkeypatch):
    from mumis.runtime import double_backprop_kernels

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        monkeypatch.setenv("MUMIS_DOUBLE_BACKPROP_TF32", "1")
        with double_backprop_kernels():
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        monkeypatch.setenv("MUMIS_DOUBLE_BACKPROP_TF32", "yes")
        with pytest.raises(ValueError, match="MUMIS_DOUBLE_BACKPROP_TF32='yes': use 0 or 1"), double_backprop_kernels():
            pass
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32  # nothing changed
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
