"""Trace datasets (HDF5 shards) and the in-memory training records built from traces."""

from .dataset import (InflatedPriorController, TraceDataset, build_index, generate_dataset,
                      inflate, make_generation_controller)
from .records import Batch, SubBatch, TraceRecord, collate, record_from_trace

__all__ = ["generate_dataset", "TraceDataset", "build_index", "inflate",
           "InflatedPriorController", "make_generation_controller", "Batch", "SubBatch",
           "TraceRecord", "collate", "record_from_trace"]
