"""The audit on the shared real data sets (skipped when ../shared/datasets is absent).

Descriptors go to the default cache (``$BMBENCH_CACHE`` or ``~/.cache/bmbench``), so only
the first run decodes the images.
"""

import pytest

from bmbench.audit import audit_table
from bmbench.data import load_dataset
from bmbench.config.recipe import SplitSpec, dataset_spec

pytestmark = pytest.mark.realdata


def audit(shared, kind):
    table = load_dataset(dataset_spec({"kind": kind, "root": str(shared / kind)}))
    return audit_table(table, SplitSpec(), jobs=2)


def test_bloodcells4_random_resplit_leaks_far_above_the_official_test(shared_datasets):
    r = audit(shared_datasets, "bloodcells4")
    official, random, grouped = r.leak["scores"]
    assert (official.n, random.n) == (400, 240)
    assert random.accuracy >= 0.93  # README of the data: about 99.5%
    assert official.accuracy <= 0.72  # about 56%
    assert grouped.accuracy <= 0.72  # keeping the augmentation families together removes the leak
    assert random.accuracy - official.accuracy >= 0.25
    assert r.leak["comparison"].leaks and "re-split of its training part LEAKS" in r.verdict.message
    sizes = r.finding.cluster_sizes
    assert (sizes > 1).sum() >= 150 and sizes.max() >= 10  # augmentation families
    assert r.pairs["label_conflict"].sum() == 0


def test_pbc_raises_no_false_alarm(shared_datasets):
    r = audit(shared_datasets, "pbc")
    assert len(r.pairs) <= 5  # one real overlapping crop in this subset
    assert not r.leak["comparison"].leaks and r.verdict.level in ("ok", "caution")
