"""benchmark: CromSS pretraining and transfer evaluation on NoLDO-S12 stores (PyTorch)."""
