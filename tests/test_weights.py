"""benchmark.weights: the CromSS and TorchGeo weights enums, local checkpoints, fetching, and the TorchGeo baseline
in the transfer pipeline and the results table."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from benchmark.data import encode
from benchmark.models import TwoBranchUNet, encoder
from benchmark.report import results_table
from benchmark.weights import CromSS, TorchGeo, cache_dir, resolve
from noldo import catalog
from noldo.errors import NoldoError
from tests.helpers import torchgeo_file
from tests.test_models import original_checkpoint

REPO = "vikki23/NoLDO-S12"


def assert_same(module, expected):
    state = module.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def test_members_and_their_metadata():
    assert len(CromSS) == 8 and len(CromSS.__members__) == 12  # four 13B aliases: S2_MID … S1_LATE
    assert CromSS.S2_MID is CromSS.S2_13B_MID and CromSS.S1_LATE is CromSS.S1_13B_LATE
    assert {m.meta["file"] for m in CromSS} == set(catalog.PUBLISHED_FILES["weights"])
    nine = CromSS.S2_9B_LATE.meta
    assert nine["bands"] == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12") and nine["in_chans"] == 9
    assert (nine["fusion"], nine["layout"], nine["subset"], nine["model"]) == ("late", "late", "9B", "resnet50")
    assert CromSS.S1_9B_MID.meta["bands"] == ("VV", "VH") and CromSS.S1_9B_MID.meta["in_chans"] == 2
    assert CromSS.S2_13B_MID.url == ("https://huggingface.co/datasets/vikki23/NoLDO-S12/resolve/main/"
                                     "weights-cromss-13B-midFusion-epoch%3D199.ckpt")
    assert all(m.meta["sha256"] is None and m.meta["licence"] == "mit" for m in CromSS)
    assert CromSS.S1_13B_LATE.meta["label"] == "CromSS-lateF (13B)"  # as the paper's rows
    assert repr(CromSS.S2_9B_MID) == "CromSS.S2_9B_MID" and str(CromSS.S2_9B_MID) == "cromss:S2_9B_MID"
    for member in (*CromSS, *TorchGeo):
        assert resolve(str(member)) == (member, None), "a member's name reads back as the member"
    assert TorchGeo.SENTINEL1_GRD_MOCO is TorchGeo.SENTINEL1_ALL_MOCO
    moco = TorchGeo.SENTINEL2_ALL_MOCO.meta
    assert (moco["in_chans"], moco["normalization"], moco["label"], moco["layout"]) == (13, "ssl4eo-moco",
                                                                                        "torchgeo-ssl4eo-moco", "bare")
    assert moco["sha256"] is None and moco["sha256_prefix"] == "df8b932e" and moco["licence"] == "cc-by-4.0"


def test_the_torchgeo_members_are_torchgeo_s():
    models = pytest.importorskip("torchgeo.models")
    for ours in TorchGeo:
        theirs = models.ResNet50_Weights[ours.name]
        assert ours.url == theirs.url
        for key in ("in_chans", "model", "publication", "repo", "ssl_method", "dataset"):
            assert ours.meta[key] == theirs.meta[key], key
        assert [b.upper() for b in ours.meta["bands"]] == [b.upper() for b in theirs.meta["bands"]]
        assert resolve(theirs) == (ours, None), "TorchGeo's own member names our baseline"
    with pytest.raises(NoldoError, match="not a baseline of ours"):
        resolve(models.ResNet18_Weights.SENTINEL2_ALL_MOCO)


def test_ssl4eo_moco_encoding_is_torchgeo_s_normalisation():
    models = pytest.importorskip("torchgeo.models")
    rng = np.random.default_rng(0)
    s2 = rng.integers(1, 12000, (13, 8, 8)).astype("uint16")
    s1 = rng.normal(-15, 5, (2, 8, 8)).astype("float32")
    for member, raw in ((TorchGeo.SENTINEL2_ALL_MOCO, s2), (TorchGeo.SENTINEL1_GRD_MOCO, s1)):
        normalize = models.ResNet50_Weights[member.name].transforms[-1]  # after their resize and crop
        expected = normalize(torch.from_numpy(raw.astype("float32"))).numpy()
        np.testing.assert_allclose(member.transforms(raw), expected, rtol=1e-5, atol=1e-6)
    s2[:, 0, 0], s1[:, 0, 0] = 0, np.nan
    assert (encode(s2, "s2", range(13), "ssl4eo-moco")[:, 0, 0] == 0).all()
    assert (encode(s1, "s1", (0, 1), "ssl4eo-moco")[:, 0, 0] == 0).all(), "nodata is 0"
    assert CromSS.S2_9B_MID.transforms(s2[list(catalog.band_subset("9B"))]).max() <= 1  # the cromss encoding


@pytest.mark.parametrize("fusion", ["mid", "late"])
def test_an_original_cromss_checkpoint_loads_into_our_encoders(fusion, tmp_path):
    torch.manual_seed(0)
    net = TwoBranchUNet(fusion, encoder="resnet18")
    path = tmp_path / f"weights-cromss-13B-{fusion}Fusion-epoch=199.ckpt"
    original_checkpoint(net, fusion, path)
    s2, s1 = (CromSS[f"{m}_13B_{fusion.upper()}"] for m in ("S2", "S1"))
    assert_same(encoder(s2, path=path, name="resnet18"), net.encoders()["s2"].state_dict())
    assert_same(encoder(f"cromss:{s1.name}={path}", name="resnet18"), net.encoders()["s1"].state_dict())
    state = s2.get_state_dict(path)
    assert state["conv1.weight"].shape == (64, 13, 7, 7) and torch.equal(state["conv1.weight"],
                                                                         net.encoders()["s2"].conv1.weight)


def test_a_torchgeo_layout_resnet50_loads_into_our_encoder(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet50_sentinel2_all_moco-df8b932e.pth"
    saved = torchgeo_file(path)
    net = encoder(TorchGeo.SENTINEL2_ALL_MOCO, path=path)
    assert "fc.weight" in saved and net.conv1.weight.shape == (64, 13, 7, 7)
    assert not any(k.startswith("fc.") for k in TorchGeo.SENTINEL2_ALL_MOCO.get_state_dict(path)), "fc is dropped"
    assert_same(net, {k: v for k, v in saved.items() if not k.startswith("fc.")})
    again = encoder(f"torchgeo:SENTINEL2_ALL_MOCO={path}")
    assert torch.equal(again.layer4[2].bn3.running_var, saved["layer4.2.bn3.running_var"])


def test_wrong_files_and_names_are_refused(tmp_path):
    mid, torchgeo = tmp_path / "mid.ckpt", tmp_path / "s1-moco.pth"
    original_checkpoint(TwoBranchUNet("mid", encoder="resnet18"), "mid", mid)
    torch.save({"conv1.weight": torch.zeros(64, 2, 7, 7), "fc.bias": torch.zeros(10)}, torchgeo)
    with pytest.raises(NoldoError, match=r"mid.ckpt holds a middle-fusion CromSS checkpoint .*, not a late-fusion"):
        CromSS.S2_13B_LATE.get_state_dict(mid)
    with pytest.raises(NoldoError, match=r"its s2 encoder takes 13 input channels, CromSS.S2_9B_MID 9 \(B2\+B3"):
        CromSS.S2_9B_MID.get_state_dict(mid)
    with pytest.raises(NoldoError, match=r"S1 encoder was pretrained beside a 13-band S2 branch, CromSS.S1_9B_MID"):
        CromSS.S1_9B_MID.get_state_dict(mid)  # both S1 encoders take 2 channels: the S2 branch tells them apart
    assert CromSS.S1_13B_MID.get_state_dict(mid)
    with pytest.raises(NoldoError, match="holds a middle-fusion CromSS checkpoint .*, not a bare ResNet state dict"):
        TorchGeo.SENTINEL2_ALL_MOCO.get_state_dict(mid)
    with pytest.raises(NoldoError, match="takes 2 input channels, TorchGeo.SENTINEL2_ALL_MOCO 13"):
        TorchGeo.SENTINEL2_ALL_MOCO.get_state_dict(torchgeo)
    torchgeo_file(tmp_path / "r18.pth", 13, "resnet18")
    with pytest.raises(NoldoError, match="do not fit this model: layer1.0.conv1.weight"):  # not a ResNet-50
        encoder(TorchGeo.SENTINEL2_ALL_MOCO, path=tmp_path / "r18.pth")
    with pytest.raises(NoldoError, match="cromss:S2_13B_MID is an s2 encoder; for s1 take cromss:S1_13B_MID"):
        resolve("cromss:S2_MID", "s1")
    with pytest.raises(NoldoError, match="for s2 take torchgeo:SENTINEL2_ALL_MOCO"):
        resolve("torchgeo:sentinel1_grd_moco", "s2")
    with pytest.raises(NoldoError, match="unknown CromSS weights 'S3_MID'; choose one of S2_13B_MID"):
        resolve("cromss:S3_MID")
    with pytest.raises(NoldoError, match="needs the modality"):
        resolve(mid)
    with pytest.raises(NoldoError, match="checkpoint .*missing.ckpt does not exist"):
        encoder(tmp_path / "missing.ckpt", "s2")


def test_a_run_of_ours_has_the_same_api(tmp_path):
    torch.manual_seed(0)
    net = TwoBranchUNet("late", s2_channels=9, encoder="resnet18")
    hparams = {"fusion": "late", "bands": "9B", "encoder": "resnet18", "single_modality": None}
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"normalization": "zscore"}))
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": hparams}, path)
    run, _ = resolve(path, "s2")
    assert {k: run.meta[k] for k in ("in_chans", "subset", "fusion", "model", "normalization", "label")} == {
        "in_chans": 9, "subset": "9B", "fusion": "late", "model": "resnet18", "normalization": "zscore",
        "label": "last"}
    raw = np.full((9, 4, 4), 5000, "uint16")
    np.testing.assert_array_equal(run.transforms(raw), encode(raw, "s2", catalog.band_subset("9B"), "zscore"))
    assert_same(encoder(path, "s2"), net.model2.encoder.state_dict())  # resnet18: the run's own encoder
    single = tmp_path / "single.ckpt"
    torch.save({"state_dict": {"net.encoder.conv1.weight": torch.zeros(64, 13, 7, 7)},
                "hyper_parameters": {**hparams, "bands": "13B", "single_modality": "s2"}}, single)
    with pytest.raises(NoldoError, match="single-modal s2 checkpoint: it has no s1 encoder"):
        encoder(single, "s1")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The published weights on a loopback hub: the 13B middle-fusion one a small original-layout checkpoint."""
    from huggingface_hub import constants

    from noldo.testing.hub import FakeHub

    state = {"net.encoder1.conv1.weight": torch.randn(4, 2, 3, 3), "net.encoder.conv1.weight": torch.randn(4, 13, 3, 3),
             "net.decoder.x": torch.zeros(1)}
    torch.save({"state_dict": state}, tmp_path / "w.ckpt")
    files = {name: b"not this one" for name in catalog.PUBLISHED_FILES["weights"]}
    files[CromSS.S2_13B_MID.meta["file"]] = (tmp_path / "w.ckpt").read_bytes()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with FakeHub({REPO: files}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server, state


def test_without_a_path_the_weights_come_through_noldo_download(hub, monkeypatch):
    from huggingface_hub import constants

    server, state = hub
    fetched = CromSS.S1_MID.get_state_dict()
    assert torch.equal(fetched["conv1.weight"], state["net.encoder1.conv1.weight"])
    assert (cache_dir() / CromSS.S1_MID.meta["file"]).is_file() and cache_dir().parent.parent.name == "cache"
    served = dict(server.served)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline, the cache serves
    assert torch.equal(CromSS.S2_MID.get_state_dict()["conv1.weight"], state["net.encoder.conv1.weight"])
    assert server.served == served, "nothing fetched again"


def test_offline_without_the_files_names_what_to_run(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(NoldoError, match=r"cannot get weights-cromss-13B-midFusion-epoch=199.ckpt into .*HF_HUB_OFF"
                                         r"LINE.*; fetch the checkpoints online with `noldo download --what weights "
                                         r"--out .*noldo/weights` .*, or give the local file \(cromss:S2_13B_MID=PATH"):
        CromSS.S2_MID.get_state_dict()
    with pytest.raises(NoldoError, match=r"HF_HUB_OFFLINE is set and .*torch/hub/checkpoints/resnet50_sentinel1_all_"
                                         r"moco-906e4356.pth is missing; fetch https://hf.co/torchgeo/"):
        TorchGeo.SENTINEL1_GRD_MOCO.get_state_dict()


@pytest.fixture(scope="module")
def truth_store(synthetic_store):
    return synthetic_store(tile_size=40, splits=[("truth_train", 8, 1), ("truth_test", 5, 2)])


def test_a_torchgeo_baseline_row_in_the_transfer_table(truth_store, tmp_path, capsys, monkeypatch):
    import benchmark.datamodules
    from benchmark.finetune import main, parse

    encodings = []

    def dataset(*args, **kwargs):
        encodings.append(kwargs["normalization"])
        return benchmark.data.DownstreamDataset(*args, **kwargs)

    monkeypatch.setattr(benchmark.datamodules, "DownstreamDataset", dataset)

    path = tmp_path / "resnet50_sentinel2_all_moco-df8b932e.pth"
    torchgeo_file(path)
    results, weights = tmp_path / "results.csv", f"torchgeo:SENTINEL2_ALL_MOCO={path}"
    common = ["--data", str(truth_store), "--task", "truth", "--epochs", "1", "--batch-size", "4", "--crop", "32",
              "--workers", "0", "--mode", "frozen", "--results", str(results)]
    row = main([*common, "--weights", weights, "--run", str(tmp_path / "run")])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["normalization"] == "ssl4eo-moco" and saved["weights"] == weights
    assert encodings and set(encodings) == {"ssl4eo-moco"}, "every split is encoded as the weights expect"
    assert row["weights"] == "torchgeo-ssl4eo-moco" and row["encoder"] == "resnet50"
    table = results_table(pd.read_csv(results), "truth")
    assert "| S2 | torchgeo-ssl4eo-moco | 1 | " in table
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*common, "--weights", weights, "--encoder", "resnet18", "--run", str(tmp_path / "r18")])
    assert capsys.readouterr().err.strip() == f"error: {weights} is a resnet50 encoder; give --encoder resnet50"
    with pytest.raises(SystemExit):
        parse(["--help"])
    assert "FAMILY:NAME[=FILE]" in capsys.readouterr().out


def test_the_report_puts_baselines_after_random_init():
    rows = [{"modality": "s2", "weights": w, "mode": m, "seed": 0, "oa": 0.5, "aa": 0.4, "miou": 0.3, "mf1": 0.2}
            for w in ("CromSS-midF (13B)", "torchgeo-ssl4eo-moco", "random") for m in ("frozen", "finetune")]
    names = [line.split(" | ")[1] for line in results_table(pd.DataFrame(rows)).splitlines()[2:]]
    assert names == ["random", "torchgeo-ssl4eo-moco", "CromSS-midF (13B)"]


def test_torchgeo_s_own_model_builder_takes_our_members(monkeypatch, tmp_path):
    """torchgeo.models.resnet50(weights=...) calls get_state_dict(progress=True): our members answer it, from the
    cache when the file is there (no hub request)."""
    torchgeo_models = pytest.importorskip("torchgeo.models")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / TorchGeo.SENTINEL2_ALL_MOCO.meta["file"]
    cached.parent.mkdir(parents=True)
    expected = torchgeo_file(cached)
    model = torchgeo_models.resnet50(weights=TorchGeo.SENTINEL2_ALL_MOCO)
    assert torch.equal(model.state_dict()["conv1.weight"], expected["conv1.weight"])
