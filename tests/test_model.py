import torch

from ml.supersimplenet.anomaly_generator import feature_noise, perlin_mask, synthetic_masks
from ml.supersimplenet.model import HeadConfig, SuperSimpleNet


def test_shapes_and_paper_parameter_count() -> None:
    model = SuperSimpleNet(HeadConfig(channels=1536))  # wide_resnet50_2 layer2+layer3
    n = sum(p.numel() for p in model.parameters())
    assert 8.5e6 < n < 9.3e6, n  # the reference: ~8.9 M trainable parameters
    small = SuperSimpleNet(HeadConfig(channels=16, seg_hidden=8, cls_hidden=4, cls_kernel=3))
    out = small(torch.randn(3, 16, 10, 12))
    assert out.pred_map.shape == (3, 1, 10, 12) and out.pred_score.shape == (3,)


def test_stop_gradient_cuts_the_score_path_into_the_segmentation_head() -> None:
    torch.manual_seed(0)
    model = SuperSimpleNet(HeadConfig(channels=8, seg_hidden=8, cls_hidden=4, cls_kernel=3))
    x = torch.randn(4, 8, 6, 6)
    for stop, expect_grad in ((True, False), (False, True)):
        model.zero_grad()
        model(x, stop_grad=stop).pred_score.sum().backward()
        g = model.seg_head.net[0].weight.grad
        assert (g is not None and g.abs().sum() > 0) == expect_grad


def test_param_groups_match_the_reference() -> None:
    model = SuperSimpleNet(HeadConfig(channels=8, seg_hidden=8, cls_hidden=4))
    groups = model.param_groups(1e-4, 2e-4)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-4, 0.01), (2e-4, 1e-5), (2e-4, 1e-5)]


def test_perlin_masks_are_binary_and_respect_real_masks() -> None:
    g = torch.Generator().manual_seed(0)
    m = perlin_mask((20, 28), 0.2, g)
    assert m.shape == (20, 28) and set(m.unique().tolist()) <= {0.0, 1.0}
    gt = torch.zeros(64, 1, 16, 16)
    gt[:, :, 4:12, 4:12] = 1
    synth = synthetic_masks(64, (16, 16), 0.0, g, gt_masks=gt, empty_probability=0.0)
    assert synth.sum() > 0  # anomalies were drawn ...
    assert (synth * gt).sum() == 0  # ... but never on a real defect
    empty = synthetic_masks(32, (16, 16), 0.0, g, empty_probability=1.0)
    assert empty.sum() == 0
    noise = feature_noise(synth[:2], 5, 0.015, g)
    assert noise.shape == (2, 5, 16, 16) and (noise.abs().sum(1, keepdim=True)[synth[:2] == 0] == 0).all()
    assert 0.01 < noise[synth[:2].expand_as(noise) > 0].std() < 0.02


def test_higher_threshold_means_smaller_synthetic_defects() -> None:
    g = torch.Generator().manual_seed(1)
    low = torch.stack([perlin_mask((32, 32), 0.2, g) for _ in range(200)]).mean()
    high = torch.stack([perlin_mask((32, 32), 0.6, g) for _ in range(200)]).mean()
    assert low > 2 * high


def test_feature_standardisation_is_applied_before_everything_and_saved_with_the_model() -> None:
    torch.manual_seed(0)
    cfg = HeadConfig(channels=8, seg_hidden=16, cls_hidden=8, cls_kernel=3)
    model = SuperSimpleNet(cfg).eval()
    feats = torch.randn(2, 8, 6, 6) * 3 + 5
    mean, std = feats.mean((0, 2, 3)), feats.std((0, 2, 3))
    plain = model((feats - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1))
    model.set_feature_stats(mean, std)
    standardised = model(feats)
    torch.testing.assert_close(standardised.pred_map, plain.pred_map)
    torch.testing.assert_close(standardised.pred_score, plain.pred_score)
    state = model.state_dict()
    assert torch.equal(state["feature_mean"], mean) and torch.equal(state["feature_std"], std)
