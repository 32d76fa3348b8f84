"""Domains, readers and sampling."""

from shoptransfer.data.domain import Domain, FeatureDomain, TextDomain, shared_label_vocabulary
from shoptransfer.data.features import read_features
from shoptransfer.data.readers import parse_blitzer, read_blitzer, read_table
from shoptransfer.data.reading import read_domain
from shoptransfer.data.sampling import (
    sample_fraction,
    sample_per_class,
    train_validation_split,
    train_validation_test_split,
)

__all__ = [
    "Domain",
    "FeatureDomain",
    "read_features",
    "TextDomain",
    "parse_blitzer",
    "read_blitzer",
    "read_domain",
    "read_table",
    "sample_fraction",
    "sample_per_class",
    "shared_label_vocabulary",
    "train_validation_split",
    "train_validation_test_split",
]
