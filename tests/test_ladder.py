"""The scale ladder's analysis on known tables: rank correlation between sizes and the transfer of
resolved effects, each with its interval."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import stats
from test_effects import additive, table

from moesearch.analysis import effects, ladder, report
from moesearch.core import results

PROXY = {0: 0.06, 1: -0.04, 2: 0.0}  # layer 0 swiglu worse, layer 1 better, layer 2 nothing


def sizes(tmp_path, large_truth, sd_large=0.004, seeds=2):
    for name in ("small", "large"):
        (tmp_path / name).mkdir()
    small = table(tmp_path / "small", additive(PROXY), 3, seeds, 0.004, rng_seed=1)
    large = table(tmp_path / "large", large_truth, 3, seeds, sd_large, rng_seed=2)
    return small, large


def test_effects_that_hold_at_the_larger_size_are_called_so_and_the_order_correlates(tmp_path):
    small, large = sizes(tmp_path, additive({0: 0.06, 1: -0.02, 2: 0.0}), seeds=3)  # layer 1's gain halves
    fits = [effects.fit(t) for t in (small, large)]
    moved = ladder.transfer(*fits).set_index("term")
    assert list(moved.index) == [
        "layer 0: swiglu instead of gelu",
        "layer 1: swiglu instead of gelu",
        "every layer: swiglu instead of gelu",
    ], "only what the proxy resolved is carried (layer 2's nothing is not)"
    assert (moved["sign"] == "holds").all()
    assert list(moved["size"]) == ["close", "different", "different"], "+0.06 stays; -0.04 halves: +0.02 doubles"
    layer1 = moved.loc["layer 1: swiglu instead of gelu"]
    assert abs(layer1["effect_large"] - -0.02) < layer1["ci95_large"], "the interval covers the truth"
    found = ladder.correlation(*fits, ladder.shared_assignments(small, large))
    assert found.shared == 8
    assert found.spearman > 0.9 and found.spearman_ci[0] > 0.5 and found.spearman_ci[1] <= 1
    assert found.kendall_ci[0] <= found.kendall <= found.kendall_ci[1]


def test_a_reversed_effect_and_a_vanished_one_are_told_apart(tmp_path):
    small, large = sizes(tmp_path, additive({0: -0.06, 1: 0.0, 2: 0.0}))
    moved = ladder.transfer(*(effects.fit(t) for t in (small, large))).set_index("term")
    layer0, layer1 = moved.loc["layer 0: swiglu instead of gelu"], moved.loc["layer 1: swiglu instead of gelu"]
    assert (layer0["sign"], layer0["size"]) == ("reverses", "different")
    assert (layer1["sign"], layer1["size"]) == ("inside noise", "different")
    lines = ladder.text(small, large, "val_loss")
    assert "layer 0: swiglu instead of gelu: +0.059" in lines[1] and "sign reverses, size different" in lines[1]


def test_the_point_correlation_is_the_rank_correlation_of_the_expected_values(tmp_path):
    """Nearly noiseless tables: the models' predictions are the truths, so the correlation is scipy's on them."""

    def quadratic(combo):  # not additive at the larger size: its model's best additive fit is ranked
        return 0.03 * sum(a == "swiglu" for a in combo) ** 2 - 0.05 * (combo[2] == "swiglu")

    small, large = sizes(tmp_path, quadratic, sd_large=1e-4)
    fits = [effects.fit(t) for t in (small, large)]
    shared = ladder.shared_assignments(small, large)
    found = ladder.correlation(*fits, shared)
    expected = [f.predict(shared)[0] for f in fits]
    assert found.spearman == pytest.approx(stats.spearmanr(*expected).statistic)
    assert found.kendall == pytest.approx(stats.kendalltau(*expected).statistic)
    assert -1 <= found.spearman_ci[0] < found.spearman_ci[1] <= 1


def test_too_few_shared_assignments_give_no_correlation_and_say_so(tmp_path):
    small, large = sizes(tmp_path, additive(PROXY))
    fits = [effects.fit(t) for t in (small, large)]
    assert ladder.correlation(*fits, ladder.shared_assignments(small, large).head(2)) is None
    few = large[large["assignment"].isin(large["assignment"].unique()[:2])]
    assert ladder.text(small, few, "val_loss")[0] == (
        "val_loss: no rank correlation: fewer than 3 assignments trained at both sizes"
    )


def test_a_noisier_larger_size_widens_the_correlation_s_interval(tmp_path):
    widths = []
    for sd in (0.002, 0.03):
        (tmp_path / f"{sd}").mkdir()
        small, large = sizes(tmp_path / f"{sd}", additive(PROXY), sd_large=sd, seeds=1)
        found = ladder.correlation(*(effects.fit(t) for t in (small, large)), ladder.shared_assignments(small, large))
        widths.append(found.spearman_ci[1] - found.spearman_ci[0])
    assert widths[0] < 0.15 and widths[1] > 2 * widths[0]


def test_a_shrunk_larger_fit_is_not_testable_and_says_so_rather_than_inside_noise(tmp_path):
    small, large = sizes(tmp_path, additive(PROXY))
    few = large[large["assignment"].isin(["gelu,gelu,gelu", "swiglu,swiglu,swiglu", "gelu,swiglu,gelu"])]
    fit = effects.fit(few)
    assert not fit.testable
    moved = ladder.transfer(effects.fit(small), fit)
    assert (moved["sign"] == "not testable").all() and (moved["size"] != "close").all()


def test_promoting_adds_the_design_where_the_front_and_baselines_cannot_test_every_layer(tmp_path):
    choices = [["gelu", "swiglu"]] * 4
    assert not ladder.testable(["gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu", "gelu,swiglu,gelu,gelu"], choices)
    from moesearch.core import design

    runs = [",".join(r) for r in design.runs(choices)]
    assert ladder.testable(runs, choices), "the design alone tests every layer"
    (tmp_path / "s").mkdir()
    small = table(tmp_path / "s", additive({0: 0.05}), 4, 1, 0.004)
    chosen = ladder.targets(small, choices)
    assert chosen[:2] == ["gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu"] and set(runs) <= set(chosen)
    assert ladder.testable(chosen, choices)


def link(results, study, source, size):
    (results / study).mkdir(exist_ok=True)
    (results / study / ladder.LINK).write_text(json.dumps({"source": source, "size": size}))


def test_a_ladder_is_shown_from_every_rung_and_from_the_proxy_to_the_top(tmp_path):
    """Three sizes in one results folder, linked as promote links them: the proxy's section shows its answer
    at each larger size, the middle one's the rungs on both sides, the top's the size below (both fronts)
    and the proxy."""
    trials = {
        name: table(tmp_path, truth, 3, 2, 0.004, rng_seed=seed, study=name)
        for name, truth, seed in [
            ("p", additive(PROXY), 1),
            ("p-w2", additive({0: 0.06, 1: -0.04}), 2),  # the proxy's answer holds
            ("p-w4", additive({0: -0.06}), 3),  # layer 0 reverses, layer 1 vanishes
        ]
    }
    link(tmp_path, "p-w2", "p", "w2")
    link(tmp_path, "p-w4", "p-w2", "w4")
    assert ladder.rungs_below(tmp_path, "p-w4") == [("p-w2", "w2"), ("p", "proxy")]
    assert ladder.rungs_above(tmp_path, "p") == [("p-w2", "w2"), ("p-w4", "w4")]
    assert ladder.rungs_above(tmp_path, "p-w4") == [] and ladder.rungs_below(tmp_path, "p") == []

    def block(lines, head):  # the lines under one heading
        start = lines.index(head) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].endswith(":")), len(lines))
        return "\n".join(lines[start:end])

    proxy = ladder.section(tmp_path, "p", trials["p"])
    assert [line for line in proxy if line.startswith("scale ladder")] == [
        "scale ladder: from 'p' to w2 ('p-w2'):",
        "scale ladder: from 'p' to w4 ('p-w4'):",
    ]
    assert "+0.059" in block(proxy, "scale ladder: from 'p' to w2 ('p-w2'):").split("sign holds")[0]
    at_w4 = block(proxy, "scale ladder: from 'p' to w4 ('p-w4'):")
    assert "layer 0: swiglu instead of gelu: +0.059" in at_w4 and "sign reverses" in at_w4
    page = report._ladder(proxy)  # the report keeps each rung's effects under its heading
    assert page.index("sign holds") < page.index("from &#x27;p&#x27; to w4") < page.index("sign reverses")

    middle = ladder.section(tmp_path, "p-w2", trials["p-w2"])
    assert middle[0] == "scale ladder: 'p-w2' is size w2 of 'p':" and "from the proxy" not in "\n".join(middle)
    assert "scale ladder: from 'p-w2' to w4 ('p-w4'):" in middle, "and the rung above it"

    top = ladder.section(tmp_path, "p-w4", trials["p-w4"])
    assert top[0] == "scale ladder: 'p-w4' is size w4 of 'p-w2':"
    assert any(line.startswith("expected front at w2: ") for line in top)
    assert any(line.startswith("expected front at w4: ") for line in top)
    from_proxy = block(top, "from the proxy 'p' to w4:")
    assert "layer 0: swiglu instead of gelu: +0.059" in from_proxy and "sign reverses" in from_proxy
    assert ladder.section(tmp_path / "elsewhere", "p", trials["p"]) == [], "no ladder: nothing shown"
    for lines in (proxy, middle, top):  # each ends with the ladder's answer in one line
        assert lines[-1].startswith("cheapest faithful rung: none yet: from w2 to w4, layer 0: swiglu instead of gelu")
        assert "reverses; its answer does not carry" in lines[-1]
    (tmp_path / "p-w4" / ladder.LINK).unlink()  # without the rung that reverses, the proxy's answer holds
    assert ladder.section(tmp_path, "p", trials["p"])[-1].startswith("cheapest faithful rung: proxy ('p'): every")


def test_a_step_whose_order_is_unsure_is_not_faithful_and_says_what_would_decide_it(tmp_path):
    small, large = sizes(tmp_path, additive({0: 0.0, 1: 0.0, 2: 0.0}), sd_large=0.02)  # the order lost in noise
    why = ladder.holds(small, large, "val_loss")
    assert why is not None and why.startswith("the rank correlation's interval reaches -")


def test_a_rung_added_later_a_loop_and_a_promotion_not_yet_trained_are_read_without_hanging(tmp_path):
    link(tmp_path, "p-w2", "p", "w2")
    link(tmp_path, "p-w4", "p-w2", "w4")
    link(tmp_path, "p-w3", "p-w2", "w3")  # a rung added between two others: both link to p-w2
    assert ladder.rungs_above(tmp_path, "p") == [("p-w2", "w2"), ("p-w3", "w3"), ("p-w4", "w4")]
    link(tmp_path, "a", "b", "w2")
    link(tmp_path, "b", "a", "w2")  # edited by hand into a loop
    assert ladder.rungs_below(tmp_path, "a") == [("b", "w2")]
    assert ladder.rungs_above(tmp_path, "a") == [("b", "w2")]
    trials = table(tmp_path, additive(PROXY), 3, 2, 0.004, study="p")
    lines = ladder.section(tmp_path, "p", trials)  # p-w2's folder holds only its link: promote not yet trained
    assert "scale ladder: from 'p' to w2 ('p-w2'):" in lines and "no noise model at one size yet" in lines[1]
    assert "none yet: from w3 to w4, the noise model is not testable at both sizes yet; training w4" in lines[-1]


def test_an_order_fully_kept_has_an_interval_that_reaches_1():
    """bench/ladder_coverage.py's kept truth, one ladder: the same effects at both sizes (Spearman 1), 16
    assignments once each. The draws' percentiles stop short of 1 (noise added to estimates that carry it);
    the interval, widened to the basic bootstrap's, reaches it."""
    import numpy as np

    from moesearch.analysis import ladder as ladder_mod

    sys_path_bench()
    import ladder_coverage

    table, rng = ladder_coverage.frame(4), np.random.default_rng(0)
    x = np.column_stack([table[f"layer_{i:02d}"] == "swiglu" for i in range(4)]).astype(float)
    a = np.array(ladder_coverage.EFFECTS[:4])
    fits = [effects.fit(table.assign(val_loss=2 + x @ a + rng.normal(0, 0.008, len(x)))) for _ in range(2)]
    codes = effects.layer_codes(table)
    assert np.nanpercentile(ladder_mod.draws(*fits, codes), 97.5) < 1, "the defect: percentiles alone"
    found = ladder_mod.correlation(*fits, codes)
    assert found.spearman_ci[1] == 1.0 and found.spearman_ci[0] > 0


def sys_path_bench():
    import sys

    from conftest import ROOT

    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))


def test_promote_is_warned_when_the_size_below_resolved_nothing(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert ladder.transfer_ready(table(tmp_path / "a", additive(PROXY), 3, 2, 0.004), "val_loss")
    assert not ladder.transfer_ready(table(tmp_path / "b", lambda combo: 0.0, 3, 1, 0.004), "val_loss")


def test_each_rung_says_what_it_trained_from_its_records():
    """Steps, tokens a training and tokens per active parameter, from each training's config and costs: a
    size that scales its tokens with its parameters (`[[scale]] tokens`) shows it."""
    import json

    import pandas as pd

    def trainings(steps: int, params: int) -> pd.DataFrame:
        config = json.dumps({"train": {"steps": steps, "micro_batch": 4}, "model": {"seq_len": 64}})
        return pd.DataFrame(
            {
                "state": ["COMPLETE", "COMPLETE", "FAIL"],
                "config_json": [config] * 3,
                "world_size": [2] * 3,
                "params_active": [params] * 3,
            }
        )

    line = ladder.trained(trainings(250, 256_000), trainings(1000, 1_024_000), ("proxy", "w256"))
    assert line == (
        "trained: proxy 250 steps, 0.128M tokens a training (0.5 per active parameter); "
        "w256 1000 steps, 0.512M tokens a training (0.5 per active parameter)"
    )


def test_a_size_below_without_records_has_nothing_to_carry():
    """promote of named assignments may start from a size with no records: no effect, no crash."""
    import pandas as pd

    assert ladder.transfer_ready(pd.DataFrame(), "val_loss") is False


def test_a_deeper_size_is_read_in_the_smaller_size_s_layers_block_by_block(tmp_path):
    """A 6-layer size whose blocks of two carry the 3-layer proxy's assignments: its 'layer i' effect is its
    block's, the order and effects compare as at one depth, and a record whose block mixes is left out."""
    from test_results import record, write

    from moesearch.core.assignment import deepen

    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small = table(tmp_path / "small", additive(PROXY), 3, 2, 0.004, rng_seed=1)
    truth = additive({0: 0.06, 1: -0.04, 2: 0.0})
    rng, rows = np.random.default_rng(2), []
    for combo in itertools.product(("gelu", "swiglu"), repeat=3):
        for seed in range(2):
            text = deepen(combo, 6).text
            rows.append(record(len(rows), text, 2.0 + truth(combo) + rng.normal(0, 0.004), 100.0, seed=seed, study="t"))
    rows.append(record(len(rows), "gelu,swiglu,gelu,gelu,gelu,gelu", 9.0, 100.0, study="t"))  # a mixed block
    write(tmp_path / "large", *rows)
    large = results.load_trials(tmp_path / "large", "t")
    assert ladder.depth_of(large) == 6
    read = ladder.in_layers(large, 3)
    assert len(read) == 16 and read["n_layers"].eq(3).all(), "the mixed record is left out"
    assert set(read["assignment"]) == set(small["assignment"])
    assert (read["layer_00"] == read["assignment"].str.split(",").str[0]).all()
    moved = ladder.transfer(effects.fit(small), effects.fit(read)).set_index("term")
    assert moved.loc["layer 0: swiglu instead of gelu", "sign"] == "holds"
    lines = ladder.text(small, large, "val_loss")
    assert "over 8 assignments trained at both sizes" in lines[0], "compared in the proxy's layers"
    (depth,) = ladder.depth_text(small, large, ("proxy", "d6"))
    assert "0 -> 0-1, 1 -> 2-3, 2 -> 4-5" in depth
    assert ladder.fronts(small, large, ("proxy", "d6"))[0] == depth
    assert ladder.depth_text(small, small, ("proxy", "proxy")) == []
