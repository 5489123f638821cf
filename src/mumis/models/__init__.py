"""Model architectures by name, and input-sensitivity helpers that work on any classifier."""
from mumis.models import resnet as _resnet  # noqa: F401  (registers)
from mumis.models import small as _small  # noqa: F401
from mumis.models import vgg as _vgg  # noqa: F401
from mumis.models import vit as _vit  # noqa: F401
from mumis.models.head import capture_features, classifier_head, head_gives_logits
from mumis.models.registry import create_model, list_models, register_model
from mumis.models.sensitivity import (
    chunked_gradients,
    double_backprop_chunk,
    logit_input_gradients,
    logit_sensitivity,
    random_other_classes,
    squared_norms,
)

__all__ = [
    "capture_features", "classifier_head", "create_model", "head_gives_logits", "list_models", "register_model",
    "chunked_gradients", "double_backprop_chunk", "logit_input_gradients", "logit_sensitivity", "random_other_classes", "squared_norms",
]
