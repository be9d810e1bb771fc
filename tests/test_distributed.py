"""DDP on two CPU processes (gloo): the sampler's shards and the global-batch sample selection."""

import json

from benchmark.data import EpochSampler
from tests.helpers import run_ranks

TRAIN_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
import lightning as L, torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from benchmark.datamodules import NoLDataModule

# as in Lightning < 2.6.1 (setup.cfg allows 2.4): the wrapper of a custom sampler kept set_epoch to itself
DistributedSamplerWrapper.set_epoch = torch.utils.data.DistributedSampler.set_epoch


class Record(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight, self.seen = torch.nn.Parameter(torch.zeros(())), []

    def training_step(self, batch, _):
        self.seen += [[self.current_epoch, m["index"], m["season"], float(s.sum())]
                      for m, s in zip(batch["meta"], batch["s2"])]
        return self.weight * batch["s2"].mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


module = Record()
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, limit_val_batches=0, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(module, datamodule=NoLDataModule({store!r}, crop=16, batch_size=2, val_fraction=0.1, seed=3))
print(json.dumps({{"sampler": type(trainer.train_dataloader.sampler).__name__, "seen": module.seen}}))
"""


def test_ddp_ranks_get_disjoint_equal_shards_with_new_samples_each_epoch(example_store, tmp_path):
    from benchmark.datamodules import NoLDataModule

    root, _ = example_store
    runs = [json.loads(out.splitlines()[-1]) for out in run_ranks(tmp_path, TRAIN_SCRIPT, store=str(root))]
    seen = {(rank, epoch): {index: (season, total) for e, index, season, total in run["seen"] if e == epoch}
            for rank, run in enumerate(runs) for epoch in (0, 1)}
    for rank in (0, 1):
        same = len(set(seen[rank, 0].items()) & set(seen[rank, 1].items()))
        assert same == 0, f"rank {rank} got {same} items of epoch 0 again, same season and crop, in epoch 1"
    for epoch in (0, 1):
        assert len(seen[0, epoch]) == len(seen[1, epoch]), "ranks must run the same number of items"
        assert not seen[0, epoch].keys() & seen[1, epoch].keys(), f"ranks overlap in epoch {epoch}"
    both = {**seen[0, 0], **seen[1, 0]}, {**seen[0, 1], **seen[1, 1]}
    again = both[0].keys() & both[1].keys()
    assert all(both[0][i][1] != both[1][i][1] for i in again), "a sample got the same crop in both epochs"
    assert any(both[0][i][0] != both[1][i][0] for i in again), "seasons must be redrawn each epoch"
    assert {run["sampler"] for run in runs} == {"EpochSampler"}, "Lightning must use our sampler as it is"
    # the shards interleave the single-process order: keys and resume stay as they were
    data = NoLDataModule(root, val_fraction=0.1, seed=3)
    data.setup()
    sampler = EpochSampler(data.train_ids, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = [index for index, _ in sampler]
        for rank in (0, 1):
            assert [i for e, i, *_ in runs[rank]["seen"] if e == epoch] == order[rank::2][:len(seen[rank, epoch])]


SELECTION_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {repo!r})
from benchmark.cromss.selection import global_selection_weights, selection_weights
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=rank, world_size=2)
received = []
for name in ("all_gather", "all_gather_into_tensor", "all_reduce", "broadcast"):
    def counting(out, *args, collective=getattr(dist, name), **kwargs):
        received.append(sum(t.nbytes for t in (out if isinstance(out, list) else [out])))
        return collective(out, *args, **kwargs)
    setattr(dist, name, counting)
for seed, (n, size) in enumerate([(2, 8), (3, 64), (4, 64)]):
    torch.manual_seed(seed)
    confidence = torch.where(torch.rand(2 * n, size, size) < 0.5, torch.rand(2 * n, size, size),
                             torch.randint(0, 5, (2 * n, size, size)) / 4)  # many ties, zeros and ones
    labels = torch.randint(0, 8, (2 * n, size, size))  # class 8 nowhere
    labels[n:][labels[n:] == 3] = 4  # class 3 on rank 0 only
    labels[labels == 5] = 6
    labels[0, 0, 0] = 5  # class 5: one pixel, kept only at r = 1
    labels[1, :size // 4] = labels[-1, :, :size // 3] = 255
    labels[labels == 7] = torch.where(confidence[labels == 7] > 0, 7, 1)  # class 7: no zero confidences
    mine = slice(rank * n, (rank + 1) * n)
    for kept in (0.0, 0.3, 0.5, 0.75, 0.997, 1.0):
        del received[:]
        weights = global_selection_weights(confidence[mine], labels[mine], kept, 9)
        assert torch.equal(weights, selection_weights(confidence, labels, kept, 9)[mine]), (n, size, kept)
        print(n * size * size, sum(received))
dist.destroy_process_group()
"""


def test_ddp_selection_is_exact_and_gathers_little(tmp_path):
    """Ties, a class absent on one rank and everywhere, a single-pixel class, 255: the weights of the global
    batch, exactly, for a fixed number of bytes whatever the batch."""
    for out in run_ranks(tmp_path, SELECTION_SCRIPT):
        for line in out.splitlines():
            pixels, received = map(int, line.split())
            assert received <= 4 * 9 * 256 * 8, f"{received} B received for {pixels} pixels per rank"
