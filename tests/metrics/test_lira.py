"""The per-example attack: golden values computed by hand, and a case whose memberships are known (a model that
memorised a planted, mislabelled sample against one that never saw it)."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics.accuracy import predict_logits
from mumis.metrics.lira import (
    PerExampleReference,
    lira_scores,
    memorisation_scores,
    roc_auc,
    scaled_confidence,
    shadow_memberships,
    tpr_at_fpr,
)


def test_scaled_confidence_is_the_log_odds_of_the_true_class():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [30.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    p = torch.softmax(logits.double(), 1)
    expected = [math.log(p[0, 0] / (1 - p[0, 0])), math.log(1 / 2), 30.0 - math.log(2.0)]
    assert scaled_confidence(logits, labels) == pytest.approx(expected, rel=1e-9)  # the last: p_y rounds to 1 in float32


def test_online_and_offline_scores_by_hand():
    # one sample, four shadows: IN values 3 and 5 (μ 4, σ √2), OUT values 0 and 2 (μ 1, σ √2); the model says 4
    phis = np.array([[3.0], [0.0], [5.0], [2.0]])
    member = np.array([[True], [False], [True], [False]])
    sd = math.sqrt(2.0)
    online = norm.logpdf(4.0, 4.0, sd) - norm.logpdf(4.0, 1.0, sd)
    assert lira_scores(np.array([4.0]), phis, member)[0] == pytest.approx(online)
    assert lira_scores(np.array([4.0]), phis, member, online=False)[0] == pytest.approx((4.0 - 1.0) / sd)


def test_auc_and_tpr_at_low_fpr_against_references():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 500)
    u = mannwhitneyu(pos, neg).statistic
    assert roc_auc(pos, neg) == pytest.approx(u / (300 * 500))
    assert roc_auc([1, 1, 2], [1, 0]) == pytest.approx((0.5 + 1 + 0.5 + 1 + 1 + 1) / 6)  # ties count one half
    neg = np.arange(1000.0)  # threshold at 1 % FPR: the 990th smallest (989.0); strictly above it counts
    assert tpr_at_fpr(np.array([989.0, 990.0, 2000.0, 5.0]), neg, 0.01) == 0.5


def test_paired_halves_make_every_sample_in_for_half_the_shadows():
    masks = shadow_memberships(101, 16, seed=3)
    assert masks.shape == (16, 101) and (masks.sum(0) == 8).all()
    assert (masks[::2].sum(1) == 50).all()


def test_a_memorised_planted_sample_scores_as_a_member_and_an_unseen_one_does_not(digits_bundle):
    """Shadows on random halves of a pool with one mislabelled sample: only a model trained on it predicts its wrong
    label, so its score under the memorising model is far above its score under a model that never saw it."""
    from mumis.models import create_model
    from mumis.training import TrainRecipe, fit

    x, y = digits_bundle.train.tensors()
    x, y = x[:400], y[:400].clone()
    planted = 7
    y[planted] = (y[planted] + 5) % 10  # a label no model would predict without memorising it
    pool = ImageDataset(x, y, digits_bundle.train.classes, (0.0,), (1.0,))
    recipe = TrainRecipe(epochs=20, batch_size=32, lr=0.05, weight_decay=0.0)

    def trained(members, seed):
        torch.manual_seed(seed)
        model = create_model("small_cnn", 10, 1)
        fit(model, pool.subset(np.flatnonzero(members)), recipe, seed=seed, show_progress=False)
        return model

    masks = shadow_memberships(len(pool), 8, seed=0)
    shadow_phis = np.stack([scaled_confidence(predict_logits(trained(m, s), pool), pool.labels)
                            for s, m in enumerate(masks)])
    with_it, without_it = np.ones(len(pool), bool), np.ones(len(pool), bool)
    without_it[planted] = False
    scores = {name: lira_scores(scaled_confidence(predict_logits(trained(m, 100), pool), pool.labels), shadow_phis,
                                masks)[planted] for name, m in (("memorised", with_it), ("never seen", without_it))}
    assert scores["memorised"] > 2.0 and scores["never seen"] < -2.0, scores


def test_memorisation_is_the_mean_confidence_in_minus_out_by_hand():
    # 4 shadows, 3 samples; sample 0 is fitted only when seen, sample 1 always, sample 2 never
    phis = np.array([[5.0, 3.0, -1.0], [-1.0, 3.0, -1.0], [6.0, 3.0, -2.0], [0.0, 3.0, -2.0]])
    seen = np.array([[True, True, False], [False, False, True], [True, True, True], [False, False, False]])
    assert memorisation_scores(phis, seen) == pytest.approx([5.5 - (-0.5), 3.0 - 3.0, (-1.0 - 2.0) / 2 - (-1.5)])


def test_the_reference_scores_only_forget_and_unseen_samples_as_the_whole_pool_would():
    """PerExampleReference.attack puts only D_f and the never-seen samples through the model, with the shadows' fits
    from the whole pool: its scores equal lira_scores on every pool sample, also where a sample has too few IN or
    OUT shadows and takes the pooled σ (unbalanced memberships here)."""
    torch.manual_seed(0)
    pool = ImageDataset(torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (30,)),
                        ("a", "b", "c"), (0.5,), (0.25,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    rng = np.random.default_rng(0)
    shadow_in = rng.random((3, 30)) < 0.3
    shadow_phis = rng.normal(size=(3, 30))
    positives, negatives = np.array([4, 1, 17]), np.arange(20, 30)
    reference = PerExampleReference(pool, shadow_phis, shadow_in, positives, negatives)
    everything = scaled_confidence(predict_logits(model, pool), pool.labels)
    for online in (True, False):
        full = lira_scores(everything, shadow_phis, shadow_in, online)
        got = reference.attack(model, online)
        assert np.allclose(got["scores"], full[positives], rtol=0, atol=1e-12)
        assert got["auc"] == pytest.approx(roc_auc(full[positives], full[negatives]))
