from __future__ import annotations

import pytest

from shoptransfer.data import (
    TextDomain,
    sample_fraction,
    sample_per_class,
    shared_label_vocabulary,
    train_validation_test_split,
)
from shoptransfer.errors import ConfigError, DataError


def make_domain(n_per_class: int = 10, classes: tuple[str, ...] = ("neg", "pos")) -> TextDomain:
    texts, labels = [], []
    for cls in classes:
        for i in range(n_per_class):
            texts.append(f"{cls} review number {i}")
            labels.append(cls)
    return TextDomain("toy", texts, labels, source="toy.csv")


def test_empty_domain_and_empty_text_are_errors() -> None:
    with pytest.raises(DataError, match="has no examples"):
        TextDomain("d", [], None)
    with pytest.raises(DataError, match="example 1 has empty text"):
        TextDomain("d", ["ok", "  "], None)
    with pytest.raises(DataError, match="2 examples but 1 labels"):
        TextDomain("d", ["a", "b"], ["x"])


def test_single_class_source_and_unknown_target_labels() -> None:
    single = make_domain(classes=("pos",))
    with pytest.raises(DataError, match="single class"):
        shared_label_vocabulary(single, make_domain())
    target = make_domain(classes=("neg", "pos", "neutral"))
    with pytest.raises(DataError, match=r"target labels \['neutral'\] are unknown"):
        shared_label_vocabulary(make_domain(), target)
    assert shared_label_vocabulary(make_domain(), make_domain(classes=("pos",))) == ["neg", "pos"]


def test_sample_per_class_is_stratified_seeded_and_disjoint() -> None:
    domain = make_domain(10)
    picked, rest = sample_per_class(domain, 3, seed=1)
    assert picked.class_counts() == {"neg": 3, "pos": 3}
    assert rest.class_counts() == {"neg": 7, "pos": 7}
    assert not set(picked.texts) & set(rest.texts)
    again, _ = sample_per_class(domain, 3, seed=1)
    other, _ = sample_per_class(domain, 3, seed=2)
    assert again.texts == picked.texts
    assert other.texts != picked.texts


def test_budget_larger_than_a_class_is_an_error() -> None:
    with pytest.raises(ConfigError, match="only"):
        sample_per_class(make_domain(4), 5, seed=0)


def test_fraction_and_three_way_split() -> None:
    domain = make_domain(20)
    picked, rest = sample_fraction(domain, 0.25, seed=0)
    assert picked.class_counts() == {"neg": 5, "pos": 5} and len(rest) == 30
    train, validation, test = train_validation_test_split(domain, 0.2, 0.2, seed=0)
    assert len(train) + len(validation) + len(test) == 40
    assert not (set(train.texts) & set(test.texts)) and not (
        set(train.texts) & set(validation.texts)
    )
    with pytest.raises(ConfigError):
        sample_fraction(domain, 1.5, seed=0)


def test_label_ids_and_hash() -> None:
    domain = make_domain(2)
    assert domain.label_ids(["neg", "pos"]).tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError, match="not in the label vocabulary"):
        domain.label_ids(["pos"])
    assert domain.data_hash() == make_domain(2).data_hash()
    assert domain.data_hash() != make_domain(3).data_hash()


def test_unlabeled_with_joins_inputs_without_labels() -> None:
    import numpy as np

    from shoptransfer.data import FeatureDomain

    pool, test = make_domain(2), TextDomain("test", ["one more"], ["pos"])
    joined = pool.unlabeled_with(test)
    assert isinstance(joined, TextDomain) and joined.name == "toy"
    assert joined.texts == pool.texts + ["one more"] and joined.labels is None
    vectors = FeatureDomain("v", np.zeros((2, 3)), ["a", "b"]).unlabeled_with(
        FeatureDomain("w", np.ones((1, 3)), None)
    )
    assert vectors.vectors.shape == (3, 3) and vectors.labels is None


def test_a_budget_equal_to_the_pool_takes_it_all() -> None:
    """It said "domain 'toy' has no examples" (the empty rest) before."""
    from shoptransfer.data.sampling import sample_count

    domain = make_domain(3)
    picked, rest = sample_per_class(domain, 3, seed=0)
    assert picked.class_counts() == {"neg": 3, "pos": 3} and rest is None
    picked, rest = sample_count(domain, len(domain), seed=0)
    assert sorted(picked.texts) == sorted(domain.texts) and rest is None


def test_splits_that_leave_nothing_say_which_split_took_it_all() -> None:
    from shoptransfer.data import train_validation_split

    one_each = make_domain(1)
    with pytest.raises(DataError, match=r"the validation split .* leaves none to train on"):
        train_validation_split(one_each, 0.1, seed=0)
    with pytest.raises(DataError, match=r"the test split \(0.2 of it, at least one per class\)"):
        train_validation_test_split(one_each, 0.1, 0.2, seed=0)


def test_a_target_too_small_for_its_test_split_says_so(tmp_path) -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    (tmp_path / "kitchen.csv").write_text("text,label\ngood pan,pos\nbad pan,neg\n")
    (tmp_path / "books.csv").write_text("text,label\ngood book,pos\nbad book,neg\n" * 3)
    config = parse_config(
        {
            "name": "small",
            "source": {"path": "books.csv"},
            "target": {"path": "kitchen.csv"},
            "recipes": ["scratch-tfidf"],
            "budgets": [0],
            "output_dir": "runs",
        },
        "x.yaml",
        tmp_path,
    )
    with pytest.raises(
        DataError,
        match=r"kitchen.csv: the target 'kitchen' has 2 examples .* "
        r"leaves none for the labelled pool",
    ):
        run_experiment(config, show_progress=False)


def test_texts_without_words_are_an_error_for_tfidf(tmp_path) -> None:
    """scikit-learn's "empty vocabulary" ValueError ended the run with a traceback."""
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    (tmp_path / "stars.csv").write_text(
        "text,stars\n" + "".join(f"{i % 10} !,{i % 5}\n" for i in range(12))
    )
    config = parse_config(
        {
            "task": "regression",
            "name": "digits",
            "target": {"path": "stars.csv", "value": "stars"},
            "recipes": ["scratch-tfidf"],
            "budgets": [3],
            "output_dir": "runs",
        },
        "x.yaml",
        tmp_path,
    )
    with pytest.raises(DataError, match="stars.csv: the 3 target training texts hold no word"):
        run_experiment(config, show_progress=False)


def test_a_regression_target_of_one_value_is_an_error(tmp_path) -> None:
    """It ran and reported Spearman 0 and R2 1 on a test set of one value."""
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    (tmp_path / "stars.csv").write_text(
        "text,stars\n" + "".join(f"review of thing {i},3\n" for i in range(20))
    )
    config = parse_config(
        {
            "task": "regression",
            "name": "flat",
            "target": {"path": "stars.csv", "value": "stars"},
            "recipes": ["scratch-tfidf"],
            "budgets": [5],
            "output_dir": "runs",
        },
        "x.yaml",
        tmp_path,
    )
    with pytest.raises(DataError, match="every target value in column 'stars' is 3; expected"):
        run_experiment(config, show_progress=False)


def test_sample_at_most_keeps_a_small_domain_and_draws_from_a_large_one() -> None:
    from shoptransfer.data.sampling import sample_at_most, sample_count

    domain = TextDomain("d", [f"t{i}" for i in range(10)], ["a", "b"] * 5)
    assert sample_at_most(domain, 10, seed=0) is domain
    drawn = sample_at_most(domain, 4, seed=3)
    assert drawn.inputs == sample_count(domain, 4, seed=3)[0].inputs
    assert len(drawn) == 4 and drawn.inputs == sorted(drawn.inputs, key=lambda t: int(t[1:]))
