"""Offline datasets for MA-CDMP and the offline baselines: the episode record and HDF5 schema
(:mod:`~radiorl.data.schema`), the crash-safe writer and validating reader
(:mod:`~radiorl.data.hdf5`), affine normalizers (:mod:`~radiorl.data.normalizers`) and
boundary-respecting training windows (:mod:`~radiorl.data.windows`)."""
from radiorl.data.hdf5 import DatasetWriter, OfflineDataset, load_dataset, partial_path
from radiorl.data.normalizers import Normalizer, RunningStats
from radiorl.data.schema import (FORMAT, OBS_DIM, SCHEMA_VERSION, DatasetError, EpisodeRecord)
from radiorl.data.windows import WindowDataset, discounted_window_returns

__all__ = [
    "DatasetError", "DatasetWriter", "EpisodeRecord", "FORMAT", "Normalizer", "OBS_DIM",
    "OfflineDataset", "RunningStats", "SCHEMA_VERSION", "WindowDataset",
    "discounted_window_returns", "load_dataset", "partial_path",
]
