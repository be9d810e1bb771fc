# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Pretrain CromSS on noisy labels, then transfer
#
# CromSS pretrains two U-Nets, one on Sentinel-1 and one on Sentinel-2, on *noisy* Dynamic World
# labels. Each branch judges which labels to trust from the other branch's confidence (cross-modal
# sample selection), the targets are smoothed with the labels of the neighbourhood and the other
# seasons, and the two branches teach each other where they are sure (consistency).
#
# This notebook runs the method on the demo store at CPU size: pretrain (a few minutes), fine-tune
# the S2 encoder on clean labels against random initialisation, print the results table, and then
# look inside: which pixels does CromSS believe are mislabelled? The demo store comes from the
# synthetic source, which knows the true land cover, so we can check.
#
# The same steps from the command line: `python -m benchmark.cromss`, `python -m benchmark.finetune`
# and `python -m benchmark.report` (README, "CromSS pretraining" and "Transfer evaluation").

# %% tags=["parameters"]
from pathlib import Path

DATA = Path("../demo-data")              # the store; missing demo splits are built (synthetic source)
OUT = Path("../runs/notebook-03")        # run folders and the results CSV
CONFIG = Path("../benchmark/configs/cromss-demo.yaml")
STORE = {"region": "demo", "samples": 64, "truth_train": 32, "truth_test": 16, "truth_tile": 128}
PRETRAIN = {"fusion": "mid"}             # overrides of CONFIG (8 epochs, ResNet-18, 64-px crops)
FINETUNE = {"task": "truth", "modality": "s2", "encoder": "resnet18", "decoder": "deeplabv3plus", "epochs": 8,
            "batch_size": 8, "crop": 64, "lr": 5e-4, "cosine_epochs": 6, "workers": 0}
SEED = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Image, Markdown

from benchmark.cromss import cromss_loss
from benchmark.cromss.module import CromSSModule
from benchmark.cromss.selection import kept_fraction
from benchmark.cromss.train import DEFAULTS, train
from benchmark.data import NoLPretrainDataset
from benchmark.finetune import finetune
from benchmark.report import results_table
from benchmark.runs import resolve_config
from benchmark.study import ensure_stores
from noldo import catalog
from noldo.plot import label_colours, true_colour

ensure_stores(DATA, STORE)

# %% [markdown]
# ## Pretrain
#
# The demo configuration: ResNet-18 encoders, middle fusion, 8 epochs with the selection ramp
# scaled to 6 epochs (the paper: ResNet-50, 200 epochs, ramp 80). A finished run is reused.

# %%
config = resolve_config(DEFAULTS, CONFIG, PRETRAIN)
pretrained = OUT / "pretrain"
checkpoint = pretrained / "checkpoints" / "last.ckpt"
if not checkpoint.exists():
    train(DATA, config, pretrained, quiet=True)
Image(filename=pretrained / "loss.png")

# %% [markdown]
# ## Transfer: fine-tune the S2 encoder on clean labels
#
# The pretrained S2 encoder gets a DeepLabV3+ decoder and is trained on the clean `truth_train`
# tiles, frozen (only the decoder learns) and fine-tuned (everything learns), against the same
# model from random weights. Scores come from one confusion matrix over the whole `truth_test` split.

# %%
results = OUT / "results.csv"
done = set(pd.read_csv(results)[["weights", "mode"]].itertuples(index=False)) if results.exists() else set()
for weights, label in ((checkpoint, "CromSS-midF"), ("random", "random")):
    for mode in ("frozen", "finetune"):
        if (label, mode) not in done:
            finetune(DATA, {**FINETUNE, "weights": str(weights), "weights_label": label, "mode": mode,
                            "seed": SEED, "results": str(results)}, OUT / f"finetune-{label}-{mode}", quiet=True)
Markdown(results_table(pd.read_csv(results)))

# %% [markdown]
# ## What does CromSS believe is noise?
#
# In each step the S2 branch keeps, per class, the pixels whose label the *S1* branch finds most
# likely (and vice versa), at full weight; the others get a weight that shrinks with that
# confidence. After the ramp only a fraction ρ = 0.5 is kept. Below, for a few samples: the S2
# image, the noisy label, the true land cover, where the noisy label is wrong, and the selection
# weight of the S2 branch. Dark pixels in the last column are labels CromSS distrusts; compare them
# with the red ones.

# %%
module = CromSSModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
dataset = NoLPretrainDataset(DATA, crop=256, augment=False, season=2)
batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
epoch = config["epochs"] - 1
with torch.no_grad():
    logits_s1, logits_s2 = module(batch)
    weights = cromss_loss(logits_s1, logits_s2, batch["label"], batch["prior"], epoch, module.config)["w_l2"]
print(f"epoch {epoch}: the selection keeps {kept_fraction(epoch, config['T'], config['prop']):.0%} of each class")

# %%
labels, truth = batch["label"].numpy(), batch["truth"].numpy()
wrong = (labels != truth) & (labels != 255)
fig, axes = plt.subplots(len(labels), 5, figsize=(15, 3.1 * len(labels)), squeeze=False)
for row, meta in enumerate(batch["meta"]["sample"]):
    s2 = dataset.group["s2"][int(batch["meta"]["index"][row]), 2][:, 4:260, 4:260]  # the same centre crop
    panels = [("S2 true colour", true_colour(s2), None),
              ("noisy label (DW)", label_colours(labels[row].astype("uint8"), catalog.DW_CLASSES), None),
              ("true land cover", label_colours(truth[row].astype("uint8"), catalog.DW_CLASSES), None),
              ("noisy label is wrong", wrong[row], "Reds"),
              ("S2 selection weight", weights[row].numpy(), "gray")]
    for ax, (title, image, cmap) in zip(axes[row], panels, strict=True):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title if row == 0 else "")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(meta)
fig.tight_layout()

# %% [markdown]
# If the selection sees through the noise, the labels it keeps at full weight are right more often
# than the labels overall:

# %%
valid = labels != 255
kept = (weights.numpy() >= 0.999) & valid
pd.Series({"correct labels, all pixels": 1 - wrong[valid].mean(),
           "correct labels, pixels kept at full weight": 1 - wrong[kept].mean(),
           "share of pixels kept at full weight": kept.sum() / valid.sum()}).map("{:.1%}".format)
