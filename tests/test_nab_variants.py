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


def test_an_ensemble_scores_each_row_as_its_most_surprised_time_scale():
    from core.likelihood import likelihood_scores

    # given two time scales' distances over one series: a slow one calm throughout, a fast one
    # that jumps at row 300, and a value out of range at row 350
    rng = np.random.default_rng(3)
    slow = 1.0 + 0.01 * rng.standard_normal(400)
    fast = 1.0 + 0.01 * rng.standard_normal(400)
    fast[300:310] += 1.0
    out_of_range = np.zeros(400, dtype=bool)
    out_of_range[350] = True
    # when the ensemble judges them
    scores = nab_variants.ensemble_scores([slow, fast], 288, 10, out_of_range)
    # then each row scores the higher of the two likelihoods, and 1 where out of range
    alone = [likelihood_scores(d, None, 288, 10)[0] for d in (slow, fast)]
    expected = np.maximum(alone[0], alone[1])
    assert np.array_equal(np.delete(scores, 350), np.delete(expected, 350)) and scores[350] == 1.0
    assert scores[305] > 0.999 > alone[0][305]
    # and an ensemble's parts are the feature sets between its bars
    assert nab_variants.parse_ensemble("value@1,mean@24|mean@2") == [[("value", 1), ("mean", 24)], [("mean", 2)]]
    assert nab_variants.parse_rearms("none,6") == [None, 6]


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
    # when two drift variants of one model and an ensemble of two time scales are
    # cross-validated with one alert policy each
    code = nab_variants.main(
        [
            "--nab-root",
            str(root),
            "--features",
            "mean@24,std@24;value@1,mean@24,std@24|value@1,mean@2,std@2",
            "--drift",
            "none,centroids:0.003:16",
            "--recents",
            "10",
            "--likelihood-thresholds",
            "0.9999",
            "--cooldowns",
            "72",
            "--rearms",
            "6",
            "--window",
            "4d",
        ]
    )
    # then each variant and the whole grid get a line with their pooled scores per profile
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 5
    for line in lines:
        scores = re.search(r"standard (-?[\d.]+)/(-?[\d.]+); low FP (-?[\d.]+)/(-?[\d.]+)", line)
        assert scores is not None, line
        assert all(-200 <= float(value) <= 100 for value in scores.groups())
    assert lines[0].startswith("mean@24,std@24 drift none") and lines[4].startswith("every variant in one grid")
    assert lines[2].startswith("value@1,mean@24,std@24|value@1,mean@2,std@2 drift none")
