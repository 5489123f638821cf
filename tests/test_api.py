"""mumis.unlearn on a user's own classifier: tensors, loaders, torchvision ResNet-18, a LayerNorm (ViT-style) model."""
import pytest
import torch
import torchvision
from torch import nn

import mumis
from mumis.errors import MumisError
from mumis.models import classifier_head, create_model
from mumis.training import TrainRecipe, fit


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unlearn_tensors_lowers_forget_accuracy_and_leaves_the_model_alone(digits_model, digits_task):
    before = {k: v.clone() for k, v in digits_model.state_dict().items()}
    x, y = digits_task.forget.tensors()
    result = mumis.unlearn(digits_model, (x, y), request="class", show_progress=False)
    assert isinstance(result, mumis.UnlearnResult)
    assert result.forget_acc_before > 90 and result.forget_acc_after < 10
    assert result.sensitivity_after < result.sensitivity_before
    assert result.data_read == ["forget"] and result.method == "mumis" and result.wall_s > 0
    assert result.trace and result.trace[0]["step"] == 0
    assert all(torch.equal(v, digits_model.state_dict()[k]) for k, v in before.items())  # not mutated
    assert result.model is not digits_model


def test_loader_and_dataset_inputs_give_the_same_result(digits_model, digits_task):
    x, y = digits_task.forget.tensors()
    by_tensors = mumis.unlearn(digits_model, (x, y), request="class", show_progress=False)
    dataset = torch.utils.data.TensorDataset(x, y)
    by_loader = mumis.unlearn(digits_model, torch.utils.data.DataLoader(dataset, batch_size=17), request="class", show_progress=False)
    by_dataset = mumis.unlearn(digits_model, dataset, request="class", show_progress=False)
    assert _same_weights(by_tensors.model, by_loader.model) and _same_weights(by_tensors.model, by_dataset.model)


def test_inplace_updates_the_callers_model(digits_model, digits_task):
    import copy

    mine = copy.deepcopy(digits_model)
    result = mumis.unlearn(mine, digits_task.forget.tensors(), request="class", inplace=True, show_progress=False)
    assert result.model is mine and not _same_weights(mine, digits_model)


@pytest.mark.parametrize("forget, message", [
    ((torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)), "N×C×H×W"),
    ((torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)), "do not fit the model"),
    ((torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 10])), "out of range"),
    ((torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), "empty"),
    ((torch.full((2, 1, 8, 8), float("nan")), torch.zeros(2, dtype=torch.long)), "NaN"),
    ((torch.zeros(2, 1, 8, 8), torch.zeros(2)), "integer class"),
    ("not data", "must be an ImageDataset"),
])
def test_bad_forget_input_is_refused_with_a_clear_error(digits_model, forget, message):
    with pytest.raises(MumisError, match=message):
        mumis.unlearn(digits_model, forget, show_progress=False)


@pytest.mark.parametrize("method", ["ft", "rl"])
def test_retain_needing_method_without_retain_data_is_refused(digits_model, digits_task, method):
    with pytest.raises(MumisError, match="needs retain"):
        mumis.unlearn(digits_model, digits_task.forget.tensors(), request="class", method=method)


def test_divergence_raises_naming_the_step_and_changes_nothing(digits_model, digits_task):
    before = {k: v.clone() for k, v in digits_model.state_dict().items()}
    with pytest.raises(MumisError, match=r"diverged at step \d+"):
        mumis.unlearn(digits_model, digits_task.forget.tensors(), request="class", variant="paper", lr=1e6, fa_floor=None,
                      show_progress=False)
    assert all(torch.equal(v, digits_model.state_dict()[k]) for k, v in before.items())


def test_mumis_on_torchvision_resnet18_imagenet_layout_cifar_size_input():
    """BatchNorm choice: MU-Mis keeps the whole model in eval mode, so BatchNorm uses (and never updates) its running
    statistics — per-sample input gradients stay independent of the batch, and the default moves only ``fc``."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    x, y = torch.randn(24, 3, 32, 32), torch.arange(24) % 10
    stats_before = net.bn1.running_mean.clone()
    result = mumis.unlearn(net, (x, y), "mumis", request="class", show_progress=False, max_steps=6)
    out = result.model
    assert classifier_head(out, x[:1]) is out.fc
    assert torch.equal(out.conv1.weight, net.conv1.weight) and torch.equal(out.bn1.running_mean, stats_before)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert result.stop_reason in ("fa_floor", "loss_plateau", "max_steps")


class TinyViT(nn.Module):
    """Patch embedding → one pre-norm transformer block (LayerNorm, self-attention, MLP) → LayerNorm → linear head."""

    def __init__(self, num_classes=10, dim=32, patch=2, image=8):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2, dim))
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.block(tokens).mean(1)))


def test_mumis_on_a_layernorm_vit_style_model(digits_bundle, digits_split, digits_task):
    train, _ = digits_split.materialise(digits_bundle)
    torch.manual_seed(0)
    vit = TinyViT()
    fit(vit, train, TrainRecipe(epochs=8, batch_size=64, lr=0.05), seed=0, show_progress=False)
    result = mumis.unlearn(vit, digits_task.forget.tensors(), request="class", show_progress=False)
    assert result.forget_acc_before > 80 and result.forget_acc_after < result.forget_acc_before - 50
    from mumis.metrics import accuracy

    assert accuracy(result.model, digits_task.retain) > accuracy(vit, digits_task.retain) - 10


def test_the_callers_train_or_eval_mode_is_handed_back(digits_model, digits_task):
    import copy

    mine = copy.deepcopy(digits_model).train()
    mumis.unlearn(mine, digits_task.forget.tensors(), request="class", show_progress=False)
    assert mine.training
    mine.eval()
    mumis.unlearn(mine, digits_task.forget.tensors(), request="class", show_progress=False)
    assert not mine.training


def test_newton_sample_request_through_the_api(digits_model, digits_task):
    """The README's sample-request call: forget + held-out tensors and the training-set size; D_r is never passed."""
    x, y = digits_task.retain.subset(range(0, 200, 2)).tensors()
    heldout = digits_task.test.tensors()
    n = len(digits_task.retain) + len(digits_task.forget)
    result = mumis.unlearn(digits_model, (x, y), "newton", heldout=heldout, train_size=n)
    assert result.data_read == ["forget", "heldout"] and result.stop_reason in ("newton_step", "heldout_drop")
    assert not _same_weights(result.model, digits_model) or result.stop_reason == "heldout_drop"
    with pytest.raises(MumisError, match="train_size=N"):
        mumis.unlearn(digits_model, (x, y), "newton", heldout=heldout)


def test_newton_on_every_layer_through_the_api(digits_model, digits_task):
    """The README's ResNet call: the same data, layers="all"; the scan's stop is reported."""
    x, y = digits_task.retain.subset(range(0, 200, 2)).tensors()
    n = len(digits_task.retain) + len(digits_task.forget)
    result = mumis.unlearn(digits_model, (x, y), "newton", heldout=digits_task.test.tensors(), train_size=n, layers="all")
    assert result.data_read == ["forget", "heldout"] and result.options["layers"] == "all"
    assert result.stop_reason in ("membership", "heldout_drop", "newton_step", "forget_accuracy")


# ------------------------------------------------------------------------------------------------ the front door
def _random_samples(task, n=60):
    """``n`` training samples of every class (mixed labels): a typical request of individual samples."""
    return task.retain.subset(range(0, 2 * n, 2)).tensors()


def test_mixed_labels_are_a_sample_request_and_auto_asks_for_the_data_that_measured_better(digits_model, digits_task):
    x, y = _random_samples(digits_task)
    assert len(set(y.tolist())) > 1
    with pytest.raises(MumisError, match=r"samples request with only forget.*heldout=.*train_size="):
        mumis.unlearn(digits_model, (x, y))
    n = len(digits_task.retain) + len(digits_task.forget)
    result = mumis.unlearn(digits_model, (x, y), heldout=digits_task.test.tensors(), train_size=n)
    assert result.request == "samples" and result.method == "newton" and result.options["layers"] == "all"
    assert "different labels" in result.why and "auto: newton" in result.why
    assert result.data_read == ["forget", "heldout"]


def test_one_label_without_a_request_kind_asks_which_it_is(digits_model, digits_task):
    x, y = digits_task.forget.subset(range(4)).tensors()
    with pytest.raises(MumisError, match="request='class'.*request='samples'"):
        mumis.unlearn(digits_model, (x, y))


def test_four_samples_of_one_label_do_not_erase_their_class(digits_model, digits_task):
    """One person's four photos of a digit are a sample request: the class stays as it was on unseen data."""
    from mumis.metrics import accuracy

    four = digits_task.forget.subset(range(4))
    n = len(digits_task.retain) + len(digits_task.forget)
    result = mumis.unlearn(digits_model, four.tensors(), request="samples", heldout=digits_task.test.tensors(),
                           train_size=n)
    label = int(four.labels[0])
    same_class = digits_task.forget.subset([i for i in range(4, len(digits_task.forget))])  # the class's other samples
    assert int(same_class.labels[0]) == label
    assert accuracy(result.model, same_class) >= accuracy(digits_model, same_class) - 5


def test_a_class_request_runs_mumis_from_the_table(digits_model, digits_task):
    result = mumis.unlearn(digits_model, digits_task.forget.tensors(), request="class", heldout=digits_task.test.tensors(),
                           show_progress=False)
    assert result.method == "mumis" and result.request == "class" and result.data_read == ["forget"]
    assert result.forget_acc_after < 10 and "auto: mumis" in result.why


def test_a_library_call_leaves_the_process_random_state_and_flags_alone(digits_model, digits_task):
    net = create_model("small_cnn", 10, 1)  # building a model draws its weights: before the state is taken
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    mumis.unlearn(digits_model, digits_task.forget.tensors(), request="class", show_progress=False)
    fit(net, digits_task.retain.subset(range(64)), TrainRecipe(epochs=1, batch_size=32), seed=7, show_progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_reading_a_model_hands_it_back_in_its_mode():
    from mumis.data import ImageDataset
    from mumis.metrics import accuracy

    net = create_model("small_cnn", 10, 1).train()
    data = ImageDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), tuple("0123456789"), (0.0,), (1.0,))
    accuracy(net, data)
    assert net.training


def test_explicit_config_fields_win_over_the_preset():
    from mumis.methods import get_method
    from mumis.methods.mumis import MuMis, MuMisConfig

    method = MuMis(MuMisConfig(variant="paper", lr=0.01))
    assert method.config.lr == 0.01 and method.config.objective == "paper"  # the preset fills what was not set
    assert get_method("mumis", variant="paper", lr=0.02).config.lr == 0.02
