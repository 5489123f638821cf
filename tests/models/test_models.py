"""Registry-driven: every registered architecture gets the same checks."""
import pytest
import torch

from mumis.errors import MumisError
from mumis.models import (
    create_model,
    list_models,
    logit_sensitivity,
    random_other_classes,
)

SHAPES = {"vgg16_bn": (3, 32), "resnet18": (3, 32), "fast_cifar_net": (3, 32)}


NEEDS_WEIGHTS = {"vit_b_16"}  # pretrained backbones: tested below with a local weights file


@pytest.mark.parametrize("name", sorted(set(list_models()) - NEEDS_WEIGHTS))
def test_forward_backward_and_double_backward(name):
    channels, size = SHAPES.get(name, (1, 28))
    torch.manual_seed(0)
    model = create_model(name, 7, channels).eval()
    x = torch.randn(2, channels, size, size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out[:, 0].sum(), x, create_graph=True)
    g.pow(2).sum().backward()  # MU-Mis needs second-order gradients through every architecture
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_unknown_model_and_bad_class_count():
    with pytest.raises(MumisError, match="unknown model 'nope'"):
        create_model("nope", 10)
    with pytest.raises(MumisError, match="at least 2 classes"):
        create_model("small_cnn", 1)


def test_batched_sensitivity_equals_per_sample():
    torch.manual_seed(0)
    model = create_model("small_cnn", 4, 1).eval()
    x, cls = torch.randn(5, 1, 10, 10), torch.tensor([0, 1, 2, 3, 0])
    batched = logit_sensitivity(model, x, cls)
    single = torch.cat([logit_sensitivity(model, x[i : i + 1], cls[i : i + 1]) for i in range(5)])
    assert torch.allclose(batched, single, rtol=1e-5)


def test_random_other_classes_is_uniform_over_the_others():
    labels = torch.full((30000,), 2)
    other = random_other_classes(labels, 5, torch.Generator().manual_seed(0))
    assert (other != 2).all()
    counts = torch.bincount(other, minlength=5).float() / len(other)
    assert counts[2] == 0 and torch.allclose(counts[[0, 1, 3, 4]], torch.full((4,), 0.25), atol=0.01)


def test_chunked_gradients_equal_the_one_pass_gradient():
    from mumis.models import chunked_gradients

    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1).eval()
    x, y = torch.randn(10, 1, 28, 28), torch.randint(0, 10, (10,))
    params = list(model.parameters())
    full = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), params)
    value, parts = chunked_gradients(lambda sl: torch.nn.functional.cross_entropy(model(x[sl]), y[sl]), 10, 3, params)
    assert value == pytest.approx(torch.nn.functional.cross_entropy(model(x), y).item(), rel=1e-5)
    for a, b in zip(full, parts):
        assert torch.allclose(a, b, atol=1e-6)


def test_double_backprop_chunk_scales_with_budget_and_model():
    from mumis.models import double_backprop_chunk

    small, wide = create_model("small_cnn", 10, 1), create_model("resnet18", 10, 3)
    assert double_backprop_chunk(small, (1, 28, 28), 2**30) > double_backprop_chunk(wide, (3, 32, 32), 2**30)
    assert double_backprop_chunk(small, (1, 28, 28), 2**30) > double_backprop_chunk(small, (1, 28, 28), 2**26)
    assert double_backprop_chunk(small, (1, 28, 28), 1) == 1


@pytest.fixture
def tiny_vit_weights(tmp_path, monkeypatch):
    """vit_b_16's code path with a shrunken configuration, its "ImageNet" weights in a local safetensors file."""
    from safetensors.torch import save_file
    from torchvision.models.vision_transformer import VisionTransformer

    from mumis.models import vit

    small = {"patch_size": 16, "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}
    monkeypatch.setattr(vit, "VIT_B_16", small)
    monkeypatch.setenv("MUMIS_PRETRAINED_DIR", str(tmp_path))
    torch.manual_seed(1)
    state = VisionTransformer(image_size=224, num_classes=1000, **small).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "vit_b_16.safetensors"))
    return state


def test_vit_loads_its_pretrained_backbone_and_differentiates_twice(tiny_vit_weights):
    from mumis.models import classifier_head
    from mumis.runtime import double_backprop_kernels

    torch.manual_seed(0)
    model = create_model("vit_b_16", 5, 3).eval()
    backbone = {k: v for k, v in model.vit.state_dict().items() if not k.startswith("heads")}
    assert all(torch.equal(v, tiny_vit_weights[k]) for k, v in backbone.items())
    assert classifier_head(model, torch.zeros(1, 3, 32, 32)).out_features == 5
    x = torch.randn(2, 3, 32, 32, requires_grad=True)  # CIFAR resolution, resized inside the model
    with double_backprop_kernels():  # attention with a double backward, as MU-Mis runs it
        out = model(x)
        (g,) = torch.autograd.grad(out[:, 0].sum(), x, create_graph=True)
        assert g.shape == x.shape
        g.pow(2).sum().backward()
    assert classifier_head(model, x[:1].detach()).weight.grad.abs().sum() > 0


def test_vit_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMIS_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(MumisError, match="IMAGENET1K_V1"):
        create_model("vit_b_16", 10, 3)
    (tmp_path / "vit_b_16.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MumisError, match="recreate it"):
        create_model("vit_b_16", 10, 3)
    with pytest.raises(MumisError, match="RGB"):
        create_model("vit_b_16", 10, 1)
