"""Rating prediction (task 'rating'): the reader, the recipes' claims on ratings with a planted
structure, the runner end to end, saving and loading, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from shoptransfer.api import compare, export_model, predict_ratings, run_experiment
from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.catalogue import make_recipe
from shoptransfer.config import load_config
from shoptransfer.data.ratings import RatingDomain, read_ratings
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes.base import FitData, load_saved_model

from .test_runs_and_cli import cli

GENRES = {
    "action": ["explosive car chase", "gunfight and explosions", "martial arts battle"],
    "romance": ["tender love story", "a wedding and a first kiss", "heartfelt romantic drama"],
}


def write_planted(folder: Path, users: int = 40, items: int = 30, seed: int = 0) -> Path:
    """``ratings.csv`` (user, movie, stars, when) and ``movies.csv`` (movie, title): half the
    users like action films and half romances; a user rates a film of their genre about 2
    stars higher, plus a user bias, an item bias and noise. A film's title names its genre."""
    rng = np.random.default_rng(seed)
    genre = ["action" if i % 2 == 0 else "romance" for i in range(items)]
    taste = ["action" if u % 2 == 0 else "romance" for u in range(users)]
    user_bias, item_bias = rng.normal(0, 0.8, users), rng.normal(0, 0.5, items)
    with (folder / "movies.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movie", "title"])
        for i in range(items):
            writer.writerow([f"m{i}", f"{GENRES[genre[i]][i % 3]}, film {i}"])
    with (folder / "ratings.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "movie", "stars", "when"])
        for u in range(users):
            for i in range(items):
                if rng.random() < 0.7:
                    match = 1.0 if taste[u] == genre[i] else -1.0
                    value = 3 + user_bias[u] + item_bias[i] + match + rng.normal(0, 0.3)
                    writer.writerow([f"u{u}", f"m{i}", round(float(value), 2), u * items + i])
    return folder / "ratings.csv"


def planted_domain(folder: Path) -> RatingDomain:
    path = write_planted(folder)
    return read_ratings(
        path,
        user="user",
        item="movie",
        rating="stars",
        time="when",
        items_path=folder / "movies.csv",
        item_text=["title"],
    )


def rmse(model: object, domain: RatingDomain) -> float:
    predicted = model.predict_indices(domain.user, domain.item)  # type: ignore[attr-defined]
    return float(np.sqrt(np.mean((predicted - domain.rating) ** 2)))


def write_rating_experiment(folder: Path, backbone: str, **extra: object) -> Path:
    write_planted(folder)
    config = {
        "task": "rating",
        "name": "planted",
        "target": {
            "path": "ratings.csv",
            "user": "user",
            "item": "movie",
            "rating": "stars",
            "time": "when",
            "items": "movies.csv",
            "item_id": "movie",
            "item_text": ["title"],
        },
        "recipes": [
            "rating-biases",
            {"name": "rating-mf", "factors": 4, "batch_size": 64},
            {"name": "rating-text-mf", "factors": 4, "batch_size": 64, "backbone": backbone},
        ],
        "budgets": [0.5, "all"],
        "seeds": [0],
        "output_dir": str(folder / "runs"),
        "cache_dir": str(folder / "cache"),
        **extra,
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_reader_counts_what_it_drops_and_keeps_the_latest_repeat(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating,timestamp\na,x,4,1\na,y,,2\nb,x,2,3\na,x,5,4\n")
    domain = read_ratings(path)
    assert len(domain) == 2 and domain.users == ["a", "b"] and domain.items == ["x"]
    assert sorted(domain.rating.tolist()) == [2.0, 5.0]  # a's repeated rating of x: the latest
    assert domain.report["rows without user, item or rating (dropped)"] == 1
    assert domain.report["repeated (user, item) ratings (the latest kept)"] == 1


def test_splits_and_draws_keep_the_catalogue_and_hold_out_what_they_say(tmp_path: Path) -> None:
    domain = planted_domain(tmp_path)
    pool, test = domain.split(0.2, seed=0, by="time")
    assert len(test) == round(0.2 * len(domain)) and len(pool) + len(test) == len(domain)
    assert test.time.min() >= pool.time.max()  # the latest ratings are the test set
    pool, test = domain.split(0.2, seed=0)
    assert pool.items == test.items == domain.items and pool.users == domain.users
    assert not set(zip(pool.user, pool.item)) & set(zip(test.user, test.item))
    assert len(pool.sample(0.25, seed=1)) == round(0.25 * len(pool))
    assert len(pool.sample(50, seed=1)) == 50
    assert not np.array_equal(pool.sample(50, seed=1).item, pool.sample(50, seed=2).item)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id,item_id,stars\na,x,4\n", "no column 'rating'"),
        ("user_id,item_id,rating\na,x,4\nb,x,great\n", "line 3: rating 'great' in column"),
        ("user_id,item_id,rating\na,x,inf\n", "line 2: rating 'inf'"),
    ],
)
def test_bad_ratings_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_ratings(path, time=None)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_each_recipe_beats_the_global_mean_on_planted_structure(tmp_path: Path) -> None:
    domain = planted_domain(tmp_path)
    pool, test = domain.split(0.25, seed=0)
    mean_rmse = float(np.sqrt(np.mean((test.rating - pool.rating.mean()) ** 2)))
    scores = {}
    for name, options in (("rating-biases", {}), ("rating-mf", {"batch_size": 64})):
        model = make_recipe(name, **options).fit(FitData(target=pool))
        scores[name] = rmse(model, test)
    # the biases see the user and item offsets; the factors also the planted taste (+-1 star)
    assert scores["rating-biases"] < 0.9 * mean_rmse
    assert scores["rating-mf"] < 0.6 * mean_rmse
    assert scores["rating-mf"] < 0.7 * scores["rating-biases"]


def test_item_text_predicts_cold_items(tmp_path: Path) -> None:
    """Items without a training rating: plain factors know nothing of them (mean + user bias);
    the text variant maps their titles, which name the genre, to vectors the users' tastes
    meet (the real MiniLM reads the titles)."""
    domain = planted_domain(tmp_path)
    cold = np.isin(domain.item, np.arange(20, 30))
    train, test = domain.subset(np.flatnonzero(~cold)), domain.subset(np.flatnonzero(cold))
    cache = EmbeddingCache(tmp_path / "cache")
    options = {"factors": 4, "batch_size": 64}
    plain = make_recipe("rating-mf", **options).fit(FitData(target=train))
    text = make_recipe("rating-text-mf", **options).fit(FitData(target=train, cache=cache))
    assert (plain.item_ratings[20:] == 0).all() and (text.item_ratings[20:] == 0).all()
    assert rmse(text, test) < 0.85 * rmse(plain, test)


def test_rating_run_end_to_end_saves_models_that_load_to_the_same_predictions(
    tmp_path: Path, tiny_backbone: str
) -> None:
    config = load_config(write_rating_experiment(tmp_path, tiny_backbone))
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "rating" and results["primary_metric"] == "rmse"
    assert results["higher_is_better"] is False
    assert results["data"]["target_test"]["ratings"] > 0
    records = results["results"]
    assert {r["label"] for r in records} == {"rating-biases", "rating-mf", "rating-text-mf"}
    assert {r["budget"] for r in records} == {0.5, "all"}
    test = results["data"]["target_test"]
    for record in records:
        metrics = record["metrics"]
        assert record["status"] == "ok" and record["train_seconds"] >= 0
        assert metrics["rmse"] > 0 and metrics["mae"] > 0
        assert metrics["n_examples"] == test["ratings"]
        assert ("cold_items_rmse" in metrics) == (metrics["cold_test_ratings"] > 0)
    # saved -> loaded: the same predictions, by index and by the data's ids
    domain = read_ratings(
        tmp_path / "ratings.csv", user="user", item="movie", rating="stars", time="when"
    )
    for record in records:
        folder = run_dir / record["model_dir"]
        model = load_saved_model(folder)
        again = load_saved_model(folder)
        by_index = model.predict_indices(domain.user, domain.item)  # type: ignore[attr-defined]
        assert np.array_equal(by_index, again.predict_indices(domain.user, domain.item))  # type: ignore[attr-defined]
        users = [domain.users[u] for u in domain.user[:5]]
        items = [domain.items[i] for i in domain.item[:5]]
        assert np.allclose(model.predict(users, items), by_index[:5])  # type: ignore[attr-defined]
    # an unknown user or item gets the mean and what is known of the other
    assert np.isfinite(model.predict(["nobody"], ["m1"])).all()  # type: ignore[attr-defined]
    # the API's answer is the best model's (lowest test RMSE)
    best = min(records, key=lambda r: r["metrics"]["rmse"])
    expected = load_saved_model(run_dir / best["model_dir"]).predict(["u1", "u2"], ["m3", "m4"])  # type: ignore[attr-defined]
    assert np.array_equal(predict_ratings(run_dir, ["u1", "u2"], ["m3", "m4"]), expected)
    # nothing to export to ONNX, and the error says why in one line
    with pytest.raises(ConfigError, match=r"a rating-factors model \(a rating is a sum") as raised:
        export_model(run_dir, model="rating-mf")
    assert "\n" not in str(raised.value)


def test_rating_saved_model_round_trip_keeps_predictions(tmp_path: Path) -> None:
    domain = planted_domain(tmp_path)
    for name in ("rating-biases", "rating-mf"):
        model = make_recipe(name, seed=1).fit(FitData(target=domain))
        folder = model.save(tmp_path / name)
        loaded = load_saved_model(folder)
        before = model.predict_indices(domain.user, domain.item)
        assert np.array_equal(before, loaded.predict_indices(domain.user, domain.item))  # type: ignore[attr-defined]
        assert loaded.trainable_parameters == model.trainable_parameters


def test_compare_on_ratings_judges_transfer_by_lower_rmse(
    tmp_path: Path, tiny_backbone: str
) -> None:
    text_entry = {"name": "rating-text-mf", "factors": 4, "backbone": tiny_backbone}
    path = write_rating_experiment(
        tmp_path, tiny_backbone, recipes=["rating-biases", text_entry], budgets=["all"]
    )
    run_dir = compare(load_config(path), show_progress=False)
    comparison = json.loads((run_dir / "results.json").read_text())["comparison"]
    text = next(e for e in comparison if e["label"] == "rating-text-mf")
    biases = next(e for e in comparison if e["label"] == "rating-biases")
    assert text["best_scratch"] == "rating-biases"
    # the advantage is positive when the RMSE is lower; one seed: worse at all is negative
    assert text["versus_scratch"] == pytest.approx(biases["rmse"]["mean"] - text["rmse"]["mean"])
    assert text["negative_transfer"] == (text["rmse"]["mean"] > biases["rmse"]["mean"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budgets": [100000]}, "[100000] training ratings asked for"),
        ({"recipes": [{"name": "rating-mf", "regularization": "abc"}]}, "option 'regularization'"),
        ({"recipes": ["scratch-tfidf"]}, "recipe 'scratch-tfidf' learns classification"),
        ({"split": "sideways"}, "key 'split'"),
    ],
)
def test_rating_config_mistakes_are_one_line_errors(
    tmp_path: Path, change: dict, message: str
) -> None:
    path = write_rating_experiment(tmp_path, "minilm-l6", **change)
    with pytest.raises(ConfigError) as error:
        run_experiment(load_config(path), show_progress=False)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "runs").exists()


def test_rating_run_with_a_non_numeric_rating_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = write_rating_experiment(tmp_path, "minilm-l6", recipes=["rating-biases"])
    with (tmp_path / "ratings.csv").open("a", encoding="utf-8") as handle:
        handle.write("u1,m3,five,99999\n")
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "ratings.csv line" in result.stderr and "rating 'five'" in result.stderr


def test_rating_config_needs_a_known_column_mapping() -> None:
    with pytest.raises(ConfigError, match="unknown key 'target.label'"):
        from shoptransfer.config import parse_config

        parse_config({"task": "rating", "target": {"path": "r.csv", "label": "x"}}, "exp.yaml")
