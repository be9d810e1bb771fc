"""The downstream tasks of the benchmark and the label value every loss and metric ignores.

One registry: the datasets, the fine-tuning CLI, the results files and the prediction mosaics all
read a task from :data:`TASKS`. Legends and label values are those of CATALOG.md ("Legends").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noldo import catalog
from noldo.errors import choose

#: The ignored label: the Dynamic World nodata of the store schema (cloud-masked or unlabelled pixels).
IGNORE = int(catalog.array_kind("dw").nodata)


@dataclass(frozen=True)
class Task:
    """A segmentation task on one label array of a store.

    Training indices are ``value − offset`` of the stored labels; the array's nodata becomes
    :data:`IGNORE`. ``legend[:num_classes]`` are the classes, in training-index order.
    """

    name: str
    array: str  # the label array read from the store
    num_classes: int
    decoder: str  # the paper's decoder for this task
    train_split: str
    test_split: str
    val_split: str | None
    legend: tuple[catalog.LandCoverClass, ...]
    offset: int = 0  # stored value of training index 0
    encoder_depth: int = 5
    crop: int | None = None  # the paper's training crop in px (docs/method.md, "Transfer protocol"); None: whole tiles

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.legend[:self.num_classes]]

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored label values → int64 training indices, nodata → :data:`IGNORE`."""
        nodata = catalog.array_kind(self.array).nodata
        return np.where(stored == nodata, IGNORE, stored.astype("int64") - self.offset)

    def legend_values(self, indices: np.ndarray) -> np.ndarray:
        """Training indices (or predictions) → uint8 legend values for drawing; :data:`IGNORE` stays."""
        return np.where(indices == IGNORE, IGNORE, indices + self.offset).astype("uint8")


_DW = len(catalog.DW_CLASSES)

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("dw", "dw", _DW, "deeplabv3plus", "dw_train", "dw_test", None, catalog.DW_CLASSES, crop=496),
        Task("osm", "osm", len(catalog.OSM_CLASSES), "fpn", "osm_train", "osm_test", None, catalog.OSM_CLASSES,
             offset=1, crop=480),
        Task("dfc2020", "dw", 8, "pspnet", "dfc2020_val", "dfc2020_test", None, catalog.DW_CLASSES,
             encoder_depth=3),  # the 8 DW-like classes, stored in `dw`; PSPNet on 3 encoder stages, whole tiles
        Task("truth", "truth", _DW, "deeplabv3plus", "truth_train", "truth_test", "truth_val", catalog.DW_CLASSES),
    )
}


def get_task(name: str) -> Task:
    """The task of a name, or a NoldoError listing the tasks."""
    return choose(TASKS, name, "task")
