import numpy as np
import torch

from ml.regimes import REGIME_DEFAULTS, Regime
from ml.supersimplenet.loss import distance_weights, focal_loss, supersimplenet_loss, truncated_l1
from ml.train import training_targets


def test_truncated_l1_hand_case() -> None:
    logits = torch.tensor([[[[-1.0, 0.0], [2.0, 0.2]]]])
    target = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    w = torch.ones_like(target)
    # normal: relu(-1+.5)=0, relu(0+.5)=.5 -> mean .25; anomalous: relu(-2+.5)=0, relu(-.2+.5)=.3 -> mean .15
    assert torch.isclose(truncated_l1(logits, target, w), torch.tensor(0.40))


def test_focal_loss_down_weights_easy_examples() -> None:
    easy = focal_loss(torch.tensor([6.0]), torch.tensor([1.0]))
    hard = focal_loss(torch.tensor([-2.0]), torch.tensor([1.0]))
    assert easy < 1e-8 < hard


def test_distance_weights() -> None:
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    w = distance_weights(m, w_pos=3.0, power=2.0)
    assert w[0, 0] == 1.0 and np.isclose(w[4, 4], 3.0) and 0 < w[2, 2] < w[3, 3] < w[4, 4]


def test_image_level_defects_get_no_segmentation_loss_on_their_pixels() -> None:
    """Row 1 is a defective image known only by its image-level label: its pixels are unknown."""
    b, h, w, c = 3, 8, 8, 4
    gt = torch.zeros(b, 1, h, w)
    gt[2, :, 2:4, 2:4] = 1  # row 2: defect with a mask
    known = torch.tensor([True, False, True])
    label = torch.tensor([0.0, 1.0, 1.0])
    g = torch.Generator().manual_seed(0)
    settings = REGIME_DEFAULTS[Regime.MIXED]
    for _ in range(10):  # whatever synthetic anomalies are drawn
        noise, tmap, tlabel, pw = training_targets(gt, known, label, torch.ones_like(gt), c, settings, 0.015, g)
        assert (pw[1] == 0).all() and (noise[1] == 0).all()
        assert tlabel[1] == 1 and (pw[0] > 0).all()
        pred_map = torch.randn(b, 1, h, w, requires_grad=True)
        pred_score = torch.randn(b, requires_grad=True)
        supersimplenet_loss(pred_map, pred_score, tmap, tlabel, pw).backward()
        assert (pred_map.grad[1] == 0).all()  # no segmentation gradient on unknown pixels
        assert pred_map.grad[0].abs().sum() > 0 and pred_score.grad[1] != 0
