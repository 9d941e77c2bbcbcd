"""The block-statistics evidence (models/block_stats.py, baselines/block_stats.py): the statistics as the
docstring defines them, from the same forward pass as the head's feature, and the Mahalanobis detector
against scikit-learn's shrunk covariance on real statistics of the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import ShrunkCovariance

from stream_monitor.baselines.block_stats import BlockStatsMahalanobis
from stream_monitor.baselines.fusion import ZScoreFusion, nero_residual
from stream_monitor.errors import InputError
from stream_monitor.models import create_model
from stream_monitor.models.block_stats import STATS_BLOCK, block_statistics, forward_with_stats, supports_block_stats


def test_statistics_are_the_per_channel_spatial_mean_and_population_std() -> None:
    x = torch.randn(3, 5, 4, 6, dtype=torch.float32)
    stats = block_statistics(x)
    assert stats.shape == (3, 10)
    torch.testing.assert_close(stats[:, :5], x.mean(dim=(2, 3)))
    torch.testing.assert_close(stats[:, 5:], x.std(dim=(2, 3), correction=0))


def test_the_statistics_pass_gives_exactly_the_features_the_head_reads() -> None:
    """One forward pass for both: the penultimate feature must not change when the block is tapped."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, pretrained=False).eval()
    images = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        features, feature_map, stats = forward_with_stats(model, images)
        plain, plain_map = model.forward_features(images)
    torch.testing.assert_close(features, plain, rtol=0, atol=0)
    torch.testing.assert_close(feature_map, plain_map, rtol=0, atol=0)
    assert stats.shape == (2, 2 * model.backbone.blocks[STATS_BLOCK][-1].conv_pwl.out_channels)


def test_only_efficientnet_adapters_support_block_statistics() -> None:
    assert supports_block_stats(create_model("efficientnet_lite0", 3, pretrained=False))
    assert not supports_block_stats(create_model("resnet18", 3, pretrained=False))


def test_mahalanobis_matches_scikit_learns_shrunk_covariance(real) -> None:
    """Standardise the statistics on train, pool the within-class deviations, shrink as ShrunkCovariance
    does ((1 − λ) Σ + λ tr(Σ)/p I), score the minimum class-conditional Mahalanobis distance."""
    d = real["weight"].shape[1]
    train, test = real["train_ext"], real["test_ext"]
    det = BlockStatsMahalanobis(shrinkage=0.1).fit(train, real["labels"], real["weight"], real["bias"])
    stats = train[:, d:]
    center, scale = stats.mean(axis=0), stats.std(axis=0) + 1e-6
    z = (stats - center) / scale
    labels = real["labels"]
    means = {c: z[labels == c].mean(axis=0) for c in np.unique(labels)}
    pooled = np.vstack([z[labels == c] - means[c] for c in means])
    cov = ShrunkCovariance(shrinkage=0.1, assume_centered=True).fit(pooled)
    zt = (test[:, d:] - center) / scale
    expected = np.min([cov.mahalanobis(zt - means[c]) for c in means], axis=0)
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-8)


def test_it_reads_only_the_statistics_and_separates_real_polyps(real, auroc_ood_positive) -> None:
    d = real["weight"].shape[1]
    det = BlockStatsMahalanobis().fit(real["train_ext"], real["labels"], real["weight"], real["bias"])
    scrambled = real["test_ext"].copy()
    scrambled[:, :d] = np.random.default_rng(0).normal(size=(len(scrambled), d))  # the feature part is ignored
    np.testing.assert_array_equal(det.score(scrambled), det.score(real["test_ext"]))
    scores = det.score(real["test_ext"])  # 8 ID test frames, then 8 HyperKvasir polyps
    assert auroc_ood_positive(scores[:8], scores[8:]) >= 0.8


def test_in_a_fusion_feature_components_see_only_the_penultimate_feature(real) -> None:
    """z(nero-r)+z(bstats): NERO's residual must score the D feature columns, not the statistics."""
    fusion = ZScoreFusion([nero_residual, BlockStatsMahalanobis], ("nero-r", "bstats"))
    fusion.fit(real["train_ext"], real["labels"], real["weight"], real["bias"])
    d = real["weight"].shape[1]
    nero = nero_residual().fit(real["train"], real["labels"], real["weight"], real["bias"])
    bstats = BlockStatsMahalanobis().fit(real["train_ext"], real["labels"], real["weight"], real["bias"])
    expected = ((nero.score(real["test_ext"][:, :d]) - fusion.mean_[0]) / fusion.std_[0]
                + (bstats.score(real["test_ext"]) - fusion.mean_[1]) / fusion.std_[1])
    np.testing.assert_allclose(fusion.score(real["test_ext"]), expected, rtol=1e-10)


def test_plain_features_are_refused_with_the_reason() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 8))
    with pytest.raises(InputError, match="block statistics"):
        BlockStatsMahalanobis().fit(rng.normal(size=(30, 8)), np.arange(30) % 3, weight, np.zeros(3))
