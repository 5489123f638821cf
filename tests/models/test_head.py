"""The classifier head is found from the forward pass: a 1×1-convolution head, a head registered before the body,
and a model with no separable head — each scored or checked as a user would meet it through the front door."""
import copy

import pytest
import torch
from torch import nn

import mumis
from mumis.data import concat_datasets
from mumis.errors import MumisError
from mumis.metrics import avg_gap, evaluate
from mumis.models import classifier_head, create_model, head_gives_logits
from mumis.training import TrainRecipe, fit


class ConvHeadNet(nn.Module):
    """NiN/SqueezeNet style: the scores are a 1×1 convolution with one filter per class, then global average pooling."""

    def __init__(self, k=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.score = nn.Conv2d(64, k, 1)

    def forward(self, x):
        return self.score(self.body(x)).mean((2, 3))


class HeadFirstNet(nn.Module):
    """The classifier is registered before the body, so the last nn.Linear in module order is a hidden layer."""

    def __init__(self, k=10):
        super().__init__()
        self.classifier = nn.Linear(128, k)
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 128), nn.ReLU())

    def forward(self, x):
        return self.classifier(self.body(x))


class NoHeadNet(nn.Module):
    """Scores from a 3×3 convolution: no layer maps features to logits on its own."""

    def __init__(self, k=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, k, 3, padding=1))

    def forward(self, x):
        return self.body(x).mean((2, 3))


def _trained(cls, data, epochs=12):
    torch.manual_seed(0)
    model = cls()
    fit(model, data, TrainRecipe(epochs=epochs, batch_size=64, lr=0.05), seed=0, show_progress=False)
    return model.eval()


def test_the_head_is_the_layer_that_produces_the_logits():
    x = torch.zeros(2, 1, 8, 8)
    assert classifier_head(ConvHeadNet(), x).kernel_size == (1, 1)
    net = HeadFirstNet()
    assert classifier_head(net, x) is net.classifier  # not net.body[3], the last nn.Linear registered
    with pytest.raises(MumisError, match="update='all'"):
        classifier_head(NoHeadNet(), x)


class ScaledHeadNet(HeadFirstNet):
    """Something runs after the head (a temperature): its output is not the model's."""

    def forward(self, x):
        return self.classifier(self.body(x)) / 2.0


def test_head_gives_logits_only_when_nothing_runs_after_the_head():
    x = torch.randn(3, 1, 8, 8)
    net = HeadFirstNet().train()
    assert head_gives_logits(net, net.classifier, x)
    assert net.training  # the caller's mode is handed back
    scaled = ScaledHeadNet().eval()
    assert not head_gives_logits(scaled, scaled.classifier, x)
    conv = ConvHeadNet().eval()
    assert not head_gives_logits(conv, conv.score, x)  # global pooling follows the 1×1 convolution
    cnn = create_model("small_cnn", 10, 1).eval()
    assert head_gives_logits(cnn, classifier_head(cnn, torch.randn(2, 1, 28, 28)), torch.randn(2, 1, 28, 28))


def test_a_1x1_conv_classifier_forgets_a_class_within_1_of_its_retrained_model(digits_task):
    train = concat_datasets(digits_task.retain, digits_task.forget)
    original, retrain = _trained(ConvHeadNet, train), _trained(ConvHeadNet, digits_task.retain)
    result = mumis.unlearn(original, digits_task.forget.tensors(), request="class", show_progress=False)
    gap = avg_gap(evaluate(result.model, digits_task), evaluate(retrain, digits_task))
    assert gap <= 1.0, gap
    c = int(digits_task.forget.labels[0])
    moved = [k for k in range(10) if not torch.equal(original.score.weight[k], result.model.score.weight[k])]
    assert moved == [c]  # the class's filter is the row that moves
    assert all(torch.equal(a, b) for a, b in zip(original.body.parameters(), result.model.body.parameters()))


def test_a_head_registered_first_moves_only_its_row_for_the_class(digits_task):
    train = concat_datasets(digits_task.retain, digits_task.forget)
    original = _trained(HeadFirstNet, train, epochs=6)
    hidden = copy.deepcopy(original.body.state_dict())
    result = mumis.unlearn(original, digits_task.forget.tensors(), request="class", show_progress=False)
    c = int(digits_task.forget.labels[0])
    moved = [k for k in range(10) if not torch.equal(original.classifier.weight[k], result.model.classifier.weight[k])]
    assert moved == [c] and result.forget_acc_after < 10
    assert all(torch.equal(v, result.model.body.state_dict()[k]) for k, v in hidden.items())


def test_a_model_without_a_separable_head_is_refused_with_what_to_pass(digits_task):
    with pytest.raises(MumisError, match="update='all'"):
        mumis.unlearn(NoHeadNet(), digits_task.forget.tensors(), request="class", show_progress=False)
