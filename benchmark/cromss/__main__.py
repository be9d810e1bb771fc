"""``python -m benchmark.cromss``: CromSS pretraining on a noldo store (docs/method.md).

Paper settings: --config benchmark/configs/cromss-paper.yaml; a CPU-sized demo:
--config benchmark/configs/cromss-demo.yaml. Flags override the config file. The run folder (--run)
receives config.yaml, metrics.csv, TensorBoard logs, checkpoints/ and loss.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.runs import store_root


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.cromss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=None)
    p.add_argument("--data", required=True, type=store_root, metavar="ROOT",
                   help="the store ROOT (with a 4-season split): a directory or an object-store URL")
    p.add_argument("--config", type=Path, help="YAML with any of the settings below (flags win)")
    p.add_argument("--run", type=Path, metavar="DIR", help="the run folder [default: runs/cromss-<time>]")
    p.add_argument("--out", dest="run", type=Path, help=argparse.SUPPRESS)  # the old name of --run
    p.add_argument("--resume", nargs="?", const="last", help="continue from RUN/checkpoints/last.ckpt or a path")
    p.add_argument("--split", help="split to pretrain on [nol]")
    p.add_argument("--fusion", choices=["mid", "late"], help="middle or late fusion [mid]")
    p.add_argument("--bands", choices=["13B", "9B"], help="S2 bands [13B]")
    p.add_argument("--encoder", help="any smp encoder name [resnet50]")
    p.add_argument("--epochs", type=int, help="[200]")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="per process [128]")
    p.add_argument("--lr", type=float, help="Adam learning rate [5e-3]")
    p.add_argument("--crop", type=int, help="training crop [256]")
    p.add_argument("--min-clear", dest="min_clear", type=int, metavar="SCORE",
                   help="ignore labels whose cloud score (s2_cloud, 0–100) is under SCORE [off; 60 is clear sky]")
    p.add_argument("--workers", type=int, help="DataLoader workers per process [4]")
    p.add_argument("--prior", choices=["cpu", "batch", "none"], help="where the prior is computed [cpu]")
    p.add_argument("--loader", choices=["item", "device"],
                   help="device: workers hand raw crops, encoded and augmented on the accelerator [item]")
    p.add_argument("--stats", choices=["ssl4eo", "store"],
                   help="band mean/std of the encoding: the paper's table, or the split's own (noldo stats) [ssl4eo]")
    p.add_argument("--seed", type=int, help="[42]")
    p.add_argument("--T", type=int, help="ramp length in epochs [80]")
    p.add_argument("--prop", type=float, help="kept fraction after the ramp, ρ [0.5]")
    p.add_argument("--alpha", type=float, help="prior weight of the smoothed target [0.15]")
    p.add_argument("--beta", type=float, help="uniform weight of the smoothed target [0.05]")
    p.add_argument("--lambda-con", dest="lambda_con", type=float, help="consistency weight [1]")
    p.add_argument("--no-selection", dest="selection", action="store_false", help="ablation: no sample selection")
    p.add_argument("--no-smoothing", dest="smoothing", action="store_false", help="ablation: no label smoothing")
    p.add_argument("--no-consistency", dest="consistency", action="store_false", help="ablation: no consistency")
    p.add_argument("--single-modality", dest="single_modality", choices=["s1", "s2"],
                   help="single-modal noisy-label pretraining of one U-Net")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, help="epochs between checkpoints [10]")
    p.add_argument("--accelerator", help="auto, cpu, gpu [auto]")
    p.add_argument("--devices", type=int, help="devices per node; >1 runs Lightning DDP [1]")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes (SLURM is detected) [1]")
    p.add_argument("--precision", help="Lightning precision [bf16-mixed on CUDA, else 32-true]")
    p.set_defaults(selection=None, smoothing=None, consistency=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from benchmark.cromss.train import DEFAULTS, train
    from benchmark.runs import command, config_from_args, print_json

    return command(lambda: train(args.data, config_from_args(DEFAULTS, args, "data", "run", "resume"), args.run,
                                 args.resume), print_json)


if __name__ == "__main__":
    main()
