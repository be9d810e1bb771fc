"""benchmark.models: two-branch U-Nets, downstream builders and encoder weight transfer."""

import argparse
import os
import shlex
from pathlib import Path

import pytest
import torch

from benchmark.models import TwoBranchUNet, build_downstream, load_encoder_state, load_pretrained, read_checkpoint
from noldo.errors import NoldoError


@pytest.mark.parametrize("fusion", ["mid", "late"])
def test_both_fusion_types_train_a_step(fusion):
    torch.manual_seed(0)
    net = TwoBranchUNet(fusion)  # ResNet-50, random init
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    s1, s2 = torch.randn(2, 2, 64, 64), torch.randn(2, 13, 64, 64)
    target = torch.randint(0, 9, (2, 64, 64))
    l1, l2 = net(s1, s2)
    assert l1.shape == l2.shape == (2, 9, 64, 64)
    loss = torch.nn.functional.cross_entropy(l1, target) + torch.nn.functional.cross_entropy(l2, target)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss.backward()
    optimiser.step()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith(("encoder1.", "model1.")) for k in changed)  # the S1 branch learns
    assert any(k.startswith(("encoder.", "model2.")) for k in changed)  # the S2 branch learns


def test_mid_fusion_shares_decoder_and_head():
    net = TwoBranchUNet("mid", encoder="resnet18")
    names = {n.split(".")[0] for n, _ in net.named_parameters()}
    assert names == {"encoder", "encoder1", "decoder", "segmentation_head"}
    late = TwoBranchUNet("late", encoder="resnet18")
    assert {n.split(".")[0] for n, _ in late.named_parameters()} == {"model1", "model2"}


def original_checkpoint(net, fusion, path):
    """A Lightning checkpoint in the original CromSS key layout, keys renamed explicitly per branch."""
    prefixes = {"mid": {"s1": "net.encoder1.", "s2": "net.encoder."},
                "late": {"s1": "net.model1.encoder.", "s2": "net.model2.encoder."}}[fusion]
    state = {}
    for modality, encoder in net.encoders().items():
        state |= {prefixes[modality] + k: v.clone() for k, v in encoder.state_dict().items()}
    if fusion == "mid":
        state |= {"net.decoder." + k: v for k, v in net.decoder.state_dict().items()}
    else:
        state |= {"net.model1.decoder." + k: v for k, v in net.model1.decoder.state_dict().items()}
    torch.save({"epoch": 199, "state_dict": state, "hyper_parameters": {"args": argparse.Namespace(n_classes=9)}},
               path)


@pytest.mark.parametrize("fusion", ["mid", "late"])
def test_original_layout_checkpoint_transfers_both_encoders(fusion, tmp_path):
    torch.manual_seed(1)
    net = TwoBranchUNet(fusion)
    path = tmp_path / f"weights-cromss-13B-{fusion}Fusion-epoch=199.ckpt"
    original_checkpoint(net, fusion, path)
    for modality, channels, arch in (("s1", 2, "deeplabv3plus"), ("s2", 13, "fpn")):
        state = load_encoder_state(path, modality)
        assert "conv1.weight" in state and "layer4.2.bn3.running_var" in state
        model = build_downstream(arch, channels, 9, encoder_state=state)
        pretrained = net.encoders()[modality].state_dict()
        for key, value in model.encoder.state_dict().items():
            assert torch.equal(value, pretrained[key]), key
        assert model(torch.randn(2, channels, 64, 64)).shape == (2, 9, 64, 64)


def test_our_own_lightning_style_checkpoint(tmp_path):
    net = TwoBranchUNet("mid", encoder="resnet18")
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "last.ckpt")
    state = load_encoder_state(tmp_path / "last.ckpt", "s2")
    model = build_downstream("unet", 13, 5, state, encoder="resnet18")
    assert torch.equal(model.encoder.conv1.weight, net.encoder.conv1.weight)


def test_loading_fails_loudly(tmp_path):
    net = TwoBranchUNet("late", encoder="resnet18")
    original_checkpoint(net, "late", tmp_path / "w.ckpt")
    state = load_encoder_state(tmp_path / "w.ckpt", "s2")
    with pytest.raises(ValueError, match="13-band encoder into a 9-band model"):
        build_downstream("unet", 9, 9, state, encoder="resnet18")
    with pytest.raises(ValueError, match="lack"):
        build_downstream("unet", 13, 9, {k: v for k, v in state.items() if not k.startswith("layer1")},
                         encoder="resnet18")
    torch.save({"state_dict": {"net.decoder.x": torch.zeros(1)}}, tmp_path / "none.ckpt")
    with pytest.raises(ValueError, match="no encoder weights"):
        load_encoder_state(tmp_path / "none.ckpt", "s1")
    with pytest.raises(ValueError, match="architecture"):
        build_downstream("segformer", 13, 9)


@pytest.mark.parametrize(("arch", "depth"), [("UNet", 5), ("FPN", 5), ("deeplabv3plus", 5), ("PSPNet", 3),
                                             ("pspnet", 5)])
def test_downstream_builders(arch, depth, tmp_path):
    net = TwoBranchUNet("mid", encoder="resnet18")
    original_checkpoint(net, "mid", tmp_path / "w.ckpt")
    model = build_downstream(arch, 2, 8, load_encoder_state(tmp_path / "w.ckpt", "s1"), encoder="resnet18",
                             encoder_depth=depth)
    assert model(torch.randn(2, 2, 64, 64)).shape == (2, 8, 64, 64)


def test_released_style_hyper_parameters_load(tmp_path):
    hparams = {"args": argparse.Namespace(n_classes=9, data_dir=Path("/data/ssl4eo"))}
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "hyper_parameters": hparams}, tmp_path / "w.ckpt")
    assert read_checkpoint(tmp_path / "w.ckpt")["hyper_parameters"] == hparams


def test_our_own_lightning_checkpoint_loads(synthetic_store, tmp_path):
    from benchmark.cromss.train import DEFAULTS, train

    config = {**DEFAULTS, "encoder": "resnet18", "crop": 32, "batch_size": 4, "workers": 0, "epochs": 1,
              "max_steps": 1, "T": 2, "val_fraction": 0.2}
    train(synthetic_store(samples=20, tile_size=40), config, tmp_path / "run", quiet=True)
    model, hparams = load_pretrained(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert hparams["encoder"] == "resnet18" and isinstance(model, TwoBranchUNet)


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"net.encoder.x": torch.zeros(1)}, "hyper_parameters": {"x": Payload(marker)}},
               tmp_path / "evil.ckpt")
    with pytest.raises(NoldoError, match=r"evil.ckpt is not trusted: it needs (posix|nt)\.system, which is not on"):
        load_encoder_state(tmp_path / "evil.ckpt", "s2")
    assert not marker.exists(), "nothing of the file ran"
