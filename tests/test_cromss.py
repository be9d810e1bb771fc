"""CromSS: each function against hand computations or references, the loss, training, resume and DDP."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from benchmark.cromss import (
    consistency_loss,
    consistency_weights,
    cromss_loss,
    entangle,
    entropy_confidence,
    kept_fraction,
    label_confidence,
    ramp,
    selection_weights,
    single_modal_loss,
    smooth_targets,
    weighted_soft_ce,
    weighted_soft_dice,
)
from benchmark.cromss.losses import one_hot, segmentation_loss
from benchmark.models import build_downstream, load_encoder_state
from tests.helpers import run_ranks


def test_ramp_table():
    """docs/method.md, "Schedules": T = 80, ρ = 0.5."""
    lam = [0.0067, 0.022, 0.060, 0.142, 0.287, 0.495, 0.732, 0.925, 1]
    kept = [0.997, 0.989, 0.970, 0.929, 0.857, 0.753, 0.634, 0.538, 0.5]
    for i, epoch in enumerate(range(0, 90, 10)):
        assert ramp(epoch, 80) == pytest.approx(lam[i], abs=6e-4)
        assert kept_fraction(epoch, 80, 0.5) == pytest.approx(kept[i], abs=6e-4)
    assert ramp(200, 80) == 1 and kept_fraction(200, 80, 0.5) == 0.5


def test_entropy_confidence_is_nan_free():
    logits = torch.tensor([[100.0, 0, 0], [0, 0, 0], [float("-inf"), 5.0, float("-inf")]]).T.reshape(1, 3, 3, 1)
    conf = entropy_confidence(logits)
    assert not torch.isnan(conf).any()
    assert conf[0, 0, 0] == pytest.approx(1.0) and conf[0, 1, 0] == pytest.approx(0.0, abs=1e-6)
    assert conf[0, 2, 0] == 1.0  # a true one-hot (−inf logits)
    p = torch.tensor([0.7, 0.2, 0.1])
    expected = 1 + (p * p.log()).sum() / math.log(3)
    assert entropy_confidence(p.log().view(1, 3, 1, 1))[0, 0, 0] == pytest.approx(float(expected), abs=1e-6)


def test_label_confidence_and_entangle():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).view(1, 3, 1, 1).expand(1, 3, 1, 3).clone()
    labels = torch.tensor([[[0, 2, 255]]])
    np.testing.assert_allclose(label_confidence(logits, labels)[0, 0].numpy(), [0.6, 0.1, 0.0], atol=1e-6)
    a1, a2 = torch.tensor([0.8, 0.2]), torch.tensor([0.5, 0.9])
    e1, e2 = entangle(a1, a2)
    np.testing.assert_allclose(e1.numpy(), [(0.8 + 0.4) / 2, (0.2 + 0.18) / 2])
    np.testing.assert_allclose(e2.numpy(), [(0.5 + 0.4) / 2, (0.9 + 0.18) / 2])


def test_selection_weights_are_class_balanced():
    torch.manual_seed(0)
    labels = torch.tensor([0] * 10 + [1] * 4 + [2] * 1 + [255] * 5).view(1, 4, 5)
    confidence = torch.rand(1, 4, 5)
    weights = selection_weights(confidence, labels, 0.5, 3)
    for k, n in ((0, 10), (1, 4)):
        mask = labels == k
        ones = int((weights[mask] == 1).sum())
        assert ones == n // 2, f"class {k}: the top ⌊{n}·0.5⌋ pixels get 1"
        tau = confidence[mask].sort(descending=True).values[n // 2 - 1]
        rest = mask & (weights < 1)
        torch.testing.assert_close(weights[rest], (confidence[rest] / tau).clamp(0, 1))
    assert (weights[labels == 2] == 0).all(), "⌊1·0.5⌋ = 0: the lone class-2 pixel keeps weight 0"
    assert (weights[labels == 255] == 0).all()
    assert (selection_weights(confidence, labels, 1.0, 3)[labels != 255][:14] == 1).all()
    assert (selection_weights(torch.zeros(1, 4, 5), labels, 0.5, 3)[labels == 0] == 1).all(), "τ ≤ 0 → 1"


def test_consistency_weights_and_targets():
    conf = torch.tensor([0.2, 1.0])
    np.testing.assert_allclose(consistency_weights(conf, 0.0).numpy(), [1, 1])
    np.testing.assert_allclose(consistency_weights(conf, 0.25).numpy(), [0.8, 1.0])
    np.testing.assert_allclose(consistency_weights(conf, 1.0).numpy(), [0.2, 1.0])
    labels = torch.randint(0, 9, (2, 8, 8))
    prior = torch.softmax(torch.randn(2, 9, 8, 8), dim=1)
    target = smooth_targets(labels, prior, 0.15, 0.05, 9)
    torch.testing.assert_close(target.sum(1), torch.ones(2, 8, 8))
    expected = 0.8 * F.one_hot(labels, 9).permute(0, 3, 1, 2) + 0.15 * prior + 0.05 / 9
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(smooth_targets(labels, None, 0.15, 0.05, 9).sum(1), torch.ones(2, 8, 8))


def test_weighted_losses_against_references():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6, 6)
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[0, 0] = 255
    target = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float() * (labels != 255).unsqueeze(1)
    weights = torch.rand(2, 6, 6) * (labels != 255)
    q = torch.log_softmax(logits, 1)
    reference_ce = (-(target * q).sum(1) * weights).sum() / weights.sum()
    torch.testing.assert_close(weighted_soft_ce(logits, target, weights), reference_ce)
    valid = (labels != 255).float()
    smp_dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
    torch.testing.assert_close(weighted_soft_dice(logits, target, valid), smp_dice(logits, labels))
    assert weighted_soft_ce(logits, target, torch.zeros(2, 6, 6)) == 0


def test_dice_counts_a_class_present_by_its_unweighted_target_mass():
    """docs/method.md, "Losses": a class enters the Dice mean when Σ y′_c > 0, whatever its weights."""
    torch.manual_seed(4)
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 2  # class 2 is in the target, but selection gave its only pixel weight 0
    target = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    weights = torch.ones(1, 4, 4)
    weights[0, 0, 0] = 0
    q = torch.softmax(logits, 1) * weights.unsqueeze(1)
    dice = 2 * (q * target).sum((0, 2, 3)) / (q + target * weights.unsqueeze(1)).sum((0, 2, 3))
    present = torch.tensor([1.0, 0.0, 1.0])  # class 1 is absent: it counts 0
    torch.testing.assert_close(weighted_soft_dice(logits, target, weights), ((1 - dice) * present).mean())
    assert weighted_soft_dice(logits, target, torch.zeros(1, 4, 4)) == pytest.approx(2 / 3), "no weight: 1 each"


def test_consistency_loss_stops_gradients_at_the_teacher():
    student = torch.randn(1, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(1, 3, 4, 4, requires_grad=True)
    consistency_loss(student, teacher, torch.ones(1, 4, 4)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_switched_off_cromss_is_plain_ce_plus_dice():
    torch.manual_seed(2)
    l1, l2 = torch.randn(2, 9, 8, 8), torch.randn(2, 9, 8, 8)
    labels = torch.randint(0, 9, (2, 8, 8))
    labels[1, :2] = 255
    off = {"selection": False, "smoothing": False, "consistency": False}
    out = cromss_loss(l1, l2, labels, None, epoch=30, config=off)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
    for logits, seg in ((l1, out["seg1"]), (l2, out["seg2"])):
        torch.testing.assert_close(seg, F.cross_entropy(logits, labels, ignore_index=255) + dice(logits, labels))
    torch.testing.assert_close(out["total"], out["seg1"] + out["seg2"])


def test_single_modal_selection_uses_its_own_confidence():
    torch.manual_seed(4)
    logits, labels = torch.randn(2, 9, 8, 8), torch.randint(0, 9, (2, 8, 8))
    labels[0, :3] = 255
    config = {"T": 10, "prop": 0.5, "selection": True, "smoothing": False}
    out = single_modal_loss(logits, labels, None, epoch=10, config=config)
    own = selection_weights(label_confidence(logits, labels), labels, 0.5, 9)
    assert torch.equal(out["w_l"], own) and out["w_l"].lt(1).any()
    torch.testing.assert_close(out["total"], segmentation_loss(logits, one_hot(labels, 9), own))
    plain = single_modal_loss(logits, labels)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
    torch.testing.assert_close(plain["total"], F.cross_entropy(logits, labels, ignore_index=255) + dice(logits, labels))
    smoothed = single_modal_loss(logits, labels, None, epoch=0, config={"selection": False, "smoothing": True})
    assert not torch.isclose(smoothed["total"], plain["total"])


def test_full_cromss_loss_inside():
    torch.manual_seed(3)
    l1 = torch.randn(2, 9, 8, 8, requires_grad=True)
    l2 = torch.randn(2, 9, 8, 8, requires_grad=True)
    labels = torch.randint(0, 9, (2, 8, 8))
    labels[0, 0, :4] = 255
    prior = torch.softmax(torch.randn(2, 9, 8, 8), dim=1)
    out = cromss_loss(l1, l2, labels, prior, epoch=80, config={"T": 80})
    for key in ("w_l1", "w_l2", "w_e1", "w_e2"):
        assert out[key].shape == (2, 8, 8) and (out[key][labels == 255] == 0).all()
    assert out["total"].requires_grad and not out["w_l1"].requires_grad
    out["total"].backward()
    assert l1.grad.abs().sum() > 0 and l2.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_store(synthetic_store):
    return synthetic_store(samples=20, tile_size=40)


def pretrain(store, out, *extra):
    args = [sys.executable, "-m", "benchmark.cromss", "--data", str(store), "--out", str(out), "--encoder",
            "resnet18", "--crop", "32", "--batch-size", "4", "--workers", "0", "--lr", "1e-3", "--T", "2",
            "--checkpoint-every", "1", "--seed", "0", *extra]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def epoch_losses(run):
    table = pd.read_csv(run / "metrics.csv")
    return table.dropna(subset=["train_loss"]).groupby("epoch")["train_loss"].mean()


def test_end_to_end_run_resume_and_transfer(tiny_store, tmp_path):
    summary = pretrain(tiny_store, tmp_path / "full", "--epochs", "3")
    losses = epoch_losses(tmp_path / "full")
    assert losses.iloc[-1] < losses.iloc[0], "training lowers the loss"
    assert (tmp_path / "full" / "loss.png").stat().st_size > 5000
    logged = pd.read_csv(tmp_path / "full" / "metrics.csv")
    for key in ("labels_right", "truth_acc_s1", "truth_acc_s2", "val_truth_acc_s1", "val_truth_acc_s2",
                "memorised_s1", "memorised_s2", "kept_precision_s1", "kept_precision_s2", "kept_recall_s2"):
        per_epoch = logged.dropna(subset=[key]).groupby("epoch")[key].mean()
        assert len(per_epoch) == 3 and per_epoch.between(0, 1).all(), key
    assert summary["truth_curves"] and (tmp_path / "full" / "truth.png").stat().st_size > 5000
    assert (tmp_path / "full" / "config.yaml").exists() and list((tmp_path / "full" / "tensorboard").iterdir())
    checkpoint = tmp_path / "full" / "checkpoints" / "epoch=001.ckpt"
    assert checkpoint.exists() and summary["epochs"] == 3
    state = load_encoder_state(checkpoint, "s2")
    model = build_downstream("unet", 13, 9, state, encoder="resnet18")
    assert torch.equal(model.encoder.conv1.weight, state["conv1.weight"])
    # resume: 2 epochs, then a third from last.ckpt, equals the uninterrupted third epoch
    pretrain(tiny_store, tmp_path / "part", "--epochs", "2")
    pretrain(tiny_store, tmp_path / "part", "--epochs", "3", "--resume")
    resumed = epoch_losses(tmp_path / "part")
    assert resumed.loc[2] == pytest.approx(losses.loc[2], rel=1e-5)


def test_single_modality_and_ablation_switches(tiny_store, tmp_path):
    pretrain(tiny_store, tmp_path / "s1", "--epochs", "1", "--single-modality", "s1", "--max-steps", "2")
    state = load_encoder_state(tmp_path / "s1" / "checkpoints" / "last.ckpt", "s1")
    assert state["conv1.weight"].shape[1] == 2
    logged = pd.read_csv(tmp_path / "s1" / "metrics.csv")
    assert {"truth_acc_s1", "memorised_s1", "kept_precision_s1"} <= set(logged)  # selection on its own confidence
    pretrain(tiny_store, tmp_path / "plain", "--epochs", "1", "--single-modality", "s2", "--max-steps", "2",
             "--no-selection", "--no-smoothing")
    assert not any(k.startswith("kept_") for k in pd.read_csv(tmp_path / "plain" / "metrics.csv"))
    summary = pretrain(tiny_store, tmp_path / "abl", "--epochs", "1", "--max-steps", "2", "--no-selection",
                       "--no-smoothing", "--no-consistency", "--fusion", "late", "--bands", "9B")
    assert summary["metrics"]["train_con"] == 0


def test_cli_errors_are_one_line(tiny_store, tmp_path):
    for extra, message in ((["--split", "dw_test"], "no split 'dw_test'"),
                           (["--batch-size", "64"], "fewer than one batch")):
        proc = subprocess.run([sys.executable, "-m", "benchmark.cromss", "--data", str(tiny_store), "--out",
                               str(tmp_path / "x"), *extra], capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, {repo!r})
from benchmark.cromss.selection import global_selection_weights, selection_weights
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=rank, world_size=2)
torch.manual_seed(7)
confidence, labels = torch.rand(4, 16, 16), torch.randint(0, 9, (4, 16, 16))
labels[1, :3] = 255
mine = global_selection_weights(confidence[2 * rank:2 * rank + 2], labels[2 * rank:2 * rank + 2], 0.6, 9)
whole = selection_weights(confidence, labels, 0.6, 9)[2 * rank:2 * rank + 2]
local = selection_weights(confidence[2 * rank:2 * rank + 2], labels[2 * rank:2 * rank + 2], 0.6, 9)
assert torch.equal(mine, whole), "DDP weights differ from the single process on the whole batch"
print("differs-from-local" if not torch.equal(local, whole) else "same-as-local")
dist.destroy_process_group()
"""


def test_ddp_selection_equals_single_process_on_the_global_batch(tmp_path):
    outputs = run_ranks(tmp_path, DDP_SCRIPT)
    assert any("differs-from-local" in out for out in outputs), "the test batch must depend on the global view"


def test_a_store_without_cloud_scores_still_trains(example_store, tmp_path):
    """Stores written before the s2_cloud array existed (here: the example store) open, verify and train."""
    from noldo.verify import verify

    root, _ = example_store
    assert verify(root)[0] == []
    summary = pretrain(root, tmp_path / "old", "--epochs", "1", "--max-steps", "1")
    assert summary["epochs"] == 1


def test_truth_metrics_count_memorisation_and_the_kept_pixels():
    from benchmark.cromss.truth_metrics import SNOW, truth_metrics

    truth = torch.tensor([[[1, 1, 2, 2, 3, 3]]])
    labels = torch.tensor([[[1, 4, 2, 5, SNOW, 255]]])  # right, wrong, right, wrong, seasonal snow, nodata
    predicted = torch.tensor([[[1, 4, 0, 2, SNOW, 3]]])  # memorises one of the two wrong labels
    logits = torch.nn.functional.one_hot(predicted, 9).permute(0, 3, 1, 2).float()
    kept = torch.tensor([[[True, True, False, False, True, True]]])
    out = truth_metrics(logits, labels, truth, kept)
    assert out["truth_acc"] == pytest.approx(2 / 4), "judged: the four labelled, non-snow pixels"
    assert out["memorised"] == pytest.approx(1 / 2)
    assert out["kept_precision"] == pytest.approx(1 / 2) and out["kept_recall"] == pytest.approx(1 / 2)
    assert "kept_precision" not in truth_metrics(logits, labels, truth)
