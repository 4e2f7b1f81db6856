"""A model scan on disk: finished chunks written as they complete, so a stopped run resumes where it was.

``OUT.parquet`` (one row per image) is written when the run ends, beside ``OUT.problems.parquet`` (likely label
problems), ``OUT.detections.parquet`` (every detection, for COCOeval) and ``OUT.bins.npz`` (the loss bins and the
score-IoU histograms). While running, each chunk of images goes to ``OUT.parquet.parts/`` (the same four files per
chunk); a rerun with the same ``OUT`` skips every image found there. Delete the parts folder to start over.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.model_scan.reweight import LossBins
from explorer.model_scan.run import PROBLEM_COLUMNS, Accumulator, ModelScan

_PART = re.compile(r"^images-(\d{5})\.parquet$")
_HIST_KEY = re.compile(r"^hist_(-?\d+)_(\d)$")


class ScanStore:
    """The files of one model scan (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.suffix.lower() != ".parquet":
            raise ValueError(f"the model scan writes Parquet: --out must end in .parquet, got {self.out.name}")
        if self.out.parent and not self.out.parent.is_dir():
            raise ValueError(f"the folder of {self.out} does not exist")
        self.parts = self.out.with_name(self.out.name + ".parts")

    def sidecar(self, kind: str) -> Path:
        """``OUT.<kind>.parquet`` or ``OUT.bins.npz``."""
        stem = self.out.with_suffix("")
        return stem.with_name(f"{stem.name}.{kind}" + (".npz" if kind == "bins" else ".parquet"))

    def _indices(self) -> list[int]:
        if not self.parts.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.parts.iterdir() if (m := _PART.match(p.name)))

    def done_ids(self) -> set:
        """Image ids already scanned (by an earlier run or earlier chunks of this one)."""
        ids: set = set()
        for k in self._indices():
            ids.update(pd.read_parquet(self.parts / f"images-{k:05d}.parquet", columns=["image_id"])["image_id"])
        return ids

    def write_part(self, scan: ModelScan) -> None:
        """Write one finished chunk (atomically enough: its images table is written last)."""
        self.parts.mkdir(exist_ok=True)
        k = max(self._indices(), default=0) + 1
        scan.problems.to_parquet(self.parts / f"problems-{k:05d}.parquet", index=False)
        scan.detections.to_parquet(self.parts / f"detections-{k:05d}.parquet", index=False)
        np.savez(self.parts / f"bins-{k:05d}.npz", **_arrays(scan))
        scan.images.to_parquet(self.parts / f"images-{k:05d}.parquet", index=False)

    def load(self) -> ModelScan:
        """Every finished chunk, combined."""
        images, problems, detections = [], [], []
        acc = Accumulator()
        for k in self._indices():
            images.append(pd.read_parquet(self.parts / f"images-{k:05d}.parquet"))
            problems.append(pd.read_parquet(self.parts / f"problems-{k:05d}.parquet"))
            detections.append(pd.read_parquet(self.parts / f"detections-{k:05d}.parquet"))
            bins, hists = _from_arrays(np.load(self.parts / f"bins-{k:05d}.npz"))
            acc.bins += bins
            for key, h in hists.items():
                acc.histograms[key] = acc.histograms.get(key, 0) + h
        empty = acc.result()
        return ModelScan(
            _concat(images, empty.images),
            _concat(problems, pd.DataFrame(columns=PROBLEM_COLUMNS)),
            _concat(detections, empty.detections),
            acc.bins,
            acc.histograms,
        )

    def finish(self) -> ModelScan:
        """Combine the chunks and write ``OUT`` and its sidecars."""
        scan = self.load()
        scan.images.to_parquet(self.out, index=False)
        scan.problems.to_parquet(self.sidecar("problems"), index=False)
        scan.detections.to_parquet(self.sidecar("detections"), index=False)
        np.savez(self.sidecar("bins"), **_arrays(scan))
        return scan


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def _arrays(scan: ModelScan) -> dict[str, np.ndarray]:
    out = scan.bins.to_arrays()
    out.update({f"hist_{c}_{s}": h for (c, s), h in scan.histograms.items()})
    return out


def _from_arrays(data: np.lib.npyio.NpzFile) -> tuple[LossBins, dict[tuple[int, int], np.ndarray]]:
    hists = {}
    for key in data.files:
        if m := _HIST_KEY.match(key):
            hists[(int(m.group(1)), int(m.group(2)))] = data[key]
    return LossBins(data["s0"], data["s1"]), hists
