"""The offline harness for model variants (benchmarks.nab_variants): its drift does what it says,
and its cross-validation runs on a NAB root."""

import re
import shutil

import numpy as np
import pytest

from benchmarks import nab_variants
from core.errors import UserError


def test_centroids_that_follow_a_slow_drift_keep_the_drifted_rows_near():
    # given one centroid at 0 and a series that has drifted to 1 after its first 100 rows
    z = np.r_[np.zeros(100), np.ones(400)][:, None]
    centroids = np.zeros((1, 1))
    # when scored with a fixed normal and with centroids that follow it, per row and in blocks
    fixed = nab_variants.drifted_distances(z, centroids, 100, "none")
    per_row = nab_variants.drifted_distances(z, centroids, 100, "centroids:0.01:1")
    blocks = nab_variants.drifted_distances(z, centroids, 100, "centroids:0.01:50")
    shifted = nab_variants.drifted_distances(z, centroids, 100, "shift:0.01")
    # then the fixed normal keeps the drifted rows at distance 1; the others bring them near
    assert fixed[-1] == 1.0
    assert per_row[-1] < 0.1 and blocks[-1] < 0.1 and shifted[-1] < 0.1
    # and rows before the drift starts are judged against the fitted centroids alone
    assert np.all(per_row[:101] == fixed[:101]) and centroids[0, 0] == 0.0


def test_a_misspelt_variant_is_a_user_error():
    with pytest.raises(UserError, match="centroids:RATE:BLOCK"):
        nab_variants.drifted_distances(np.zeros((3, 1)), np.zeros((1, 1)), 0, "centroid:0.1")
    with pytest.raises(UserError, match="transform@span"):
        nab_variants.parse_features("mean24")


def test_the_harness_cross_validates_variants_on_a_nab_root(nab_dir, tmp_path, capsys):
    # given a NAB root of two labelled categories
    root = tmp_path / "nab"
    for category, name in (
        ("realAdExchange", "exchange-3_cpc_results.csv"),
        ("realAWSCloudwatch", "ec2_cpu_utilization_825cc2.csv"),
    ):
        (root / "data" / category).mkdir(parents=True)
        shutil.copy(nab_dir / "data" / category / name, root / "data" / category / name)
    (root / "labels").mkdir()
    shutil.copy(nab_dir / "labels" / "combined_windows.json", root / "labels" / "combined_windows.json")
    # when two drift variants are cross-validated with one alert policy each
    code = nab_variants.main(
        [
            "--nab-root",
            str(root),
            "--features",
            "mean@24,std@24",
            "--drift",
            "none,centroids:0.003:16",
            "--recents",
            "10",
            "--likelihood-thresholds",
            "0.9999",
            "--cooldowns",
            "72",
        ]
    )
    # then each variant and the whole grid get a line with their pooled scores per profile
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 3
    for line in lines:
        scores = re.search(r"standard (-?[\d.]+)/(-?[\d.]+); low FP (-?[\d.]+)/(-?[\d.]+)", line)
        assert scores is not None, line
        assert all(-200 <= float(value) <= 100 for value in scores.groups())
    assert lines[0].startswith("mean@24,std@24 drift none") and lines[2].startswith("every variant in one grid")
