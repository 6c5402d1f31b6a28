"""MIT-BIH Arrhythmia heartbeats (HeunNet Sec. 6.2, Table 1), built as Kachuee et al. (2018) built
the widely used preprocessed set, but from the raw PhysioNet records and their reference beat
annotations (wfdb):

1. the MLII lead (a record without one, 102 and 104, gives its first signal; the report names
   the lead used), resampled 360 -> 125 Hz with a polyphase anti-aliasing filter;
2. cut into consecutive 10 s windows (the last one shorter), each min-max normalised to [0, 1];
3. T = the median interval between consecutive annotated beats of the window (the record's
   median if the window holds fewer than two);
4. one beat per annotated R peak with an AAMI label: the 1.2 T samples from the peak on, inside
   its window, cut or zero-padded to 187 samples;
5. labels N 0 {N L R e j}, S 1 {A a J S}, V 2 {V E}, F 3 {F}, Q 4 {/ f Q}; every other annotation
   symbol (rhythm and noise marks, other beat types) is skipped and counted per record.

Beat positions are the annotation samples scaled by 125/360 and rounded. Splits: `random`, a
seeded beat-level 80/20 split (what the paper's and Kachuee's 87554/21892 imply), or
`inter_patient`, by record lists (default: de Chazal et al.'s DS1 for training, DS2 for test).

Processed beats are cached per record in `<root>/mitbih_cache/beats-<key>/`, the key hashing the
preprocessing parameters; each file stores a digest of its arrays and the size and mtime of its
source files, so a changed parameter, a changed record or a corrupt or truncated file rebuilds.
`dataset=mitbih_csv` reads the preprocessed CSVs instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tokenize
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from odenets.allowed import BOOL, integer, number, one_of
from odenets.data.base import Split, TensorDataModule
from odenets.errors import ConfigError
from odenets.fileio import atomic_open

log = logging.getLogger(__name__)
CLASSES = ("N", "S", "V", "F", "Q")
AAMI = {s: i for i, group in enumerate(("NLRej", "AaJS", "VE", "F", "/fQ")) for s in group}
BEAT_SYMBOLS = set(AAMI) | {"B", "r", "n", "?"}  # PhysioNet's beat codes: the annotated R peaks
SOURCE_FS = 360
# de Chazal et al. (2004) inter-patient split (paced records 102, 104, 107, 217 left out).
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
       "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214", "219",
       "221", "222", "228", "231", "232", "233", "234")
CACHE_VERSION = 1


@dataclass(frozen=True)
class BeatParams:
    """What a beat is: the preprocessing parameters (they key the cache)."""

    lead: str = "MLII"
    fs: int = 125
    window_s: float = 10.0
    rr_factor: float = 1.2
    length: int = 187

    def key(self) -> str:
        blob = json.dumps({"params": asdict(self), "aami": AAMI, "version": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class RecordBeats:
    """One record's beats, labels, annotation counts per class and skipped symbols."""

    x: np.ndarray  # (n, length) float32
    y: np.ndarray  # (n,) int64
    annotated: np.ndarray  # (5,) annotations per AAMI class
    lead: str
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> np.ndarray:
        return np.bincount(self.y, minlength=len(CLASSES))


# --------------------------------------------------------------------------- one record
def _lead(record, wanted: str) -> tuple[np.ndarray, str]:
    names = list(record.sig_name)
    channel = names.index(wanted) if wanted in names else 0
    return record.p_signal[:, channel].astype(np.float64), names[channel]


def _normalise(window: np.ndarray) -> np.ndarray:
    low, span = window.min(), np.ptp(window)
    return (window - low) / span if span > 0 else np.zeros_like(window)


def build_record(path: Path, params: BeatParams) -> RecordBeats:
    """Beats of the record at `path` (no extension), steps 1-5 of the module docstring."""
    import wfdb  # here, not at the top: importing it takes about a second

    try:
        record, ann = wfdb.rdrecord(str(path)), wfdb.rdann(str(path), "atr")
    except (OSError, ValueError, LookupError, TypeError) as e:  # wfdb on missing, truncated or garbled files
        # (found by damaging each file; on a truncated .dat its errors are cryptic broadcasting failures)
        raise ConfigError(f"record {path}: the WFDB files are unreadable, truncated or corrupt "
                          f"({type(e).__name__}: {e}); delete them to download again") from None
    if not path.with_suffix(".atr").read_bytes().endswith(b"\0\0"):  # MIT annotation files end with 0x0000
        raise ConfigError(f"record {path}: {path.with_suffix('.atr')} is truncated (no end-of-file marker); "
                          f"delete it to download again")
    if record.fs != SOURCE_FS:
        raise ConfigError(f"record {path.name}: sampled at {record.fs} Hz, expected {SOURCE_FS} (MIT-BIH)")
    signal, lead = _lead(record, params.lead)
    ratio = Fraction(params.fs, SOURCE_FS)
    signal = resample_poly(signal, ratio.numerator, ratio.denominator)
    symbols = np.asarray(ann.symbol)
    peaks = np.minimum(np.rint(np.asarray(ann.sample) * params.fs / SOURCE_FS).astype(np.int64), len(signal) - 1)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    labelled = np.isin(symbols, list(AAMI))
    record_rr = np.median(np.diff(peaks[is_beat])) if is_beat.sum() > 1 else len(signal)

    span = round(params.window_s * params.fs)
    xs, ys = [], []
    for start in range(0, len(signal), span):
        stop = min(start + span, len(signal))
        window = _normalise(signal[start:stop])
        inside = (peaks >= start) & (peaks < stop)
        rr = np.diff(peaks[inside & is_beat])
        cut = round(params.rr_factor * (np.median(rr) if len(rr) else record_rr))
        for p, s in zip(peaks[inside & labelled], symbols[inside & labelled], strict=True):
            beat = np.zeros(params.length, dtype=np.float32)
            segment = window[p - start:p - start + min(cut, params.length)]
            beat[:len(segment)] = segment
            xs.append(beat)
            ys.append(AAMI[s])
    annotated = np.bincount([AAMI[s] for s in symbols[labelled]], minlength=len(CLASSES))
    return RecordBeats(x=np.array(xs, dtype=np.float32).reshape(-1, params.length), y=np.array(ys, dtype=np.int64),
                       annotated=annotated, lead=lead, skipped=dict(Counter(symbols[~labelled].tolist())))


# --------------------------------------------------------------------------- the cache
def _source_id(path: Path) -> str:
    stats = [path.with_suffix(ext).stat() for ext in (".hea", ".dat", ".atr")]
    return ";".join(f"{s.st_size}:{s.st_mtime_ns}" for s in stats)


def _digest(x: np.ndarray, y: np.ndarray, annotated: np.ndarray) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (x, y, annotated))).hexdigest()


def _write_cache(file: Path, beats: RecordBeats, source: str) -> None:
    """Cache the beats; a read-only data folder only costs the rebuild next time."""
    try:
        with atomic_open(file, "wb") as f:
            np.savez(f, x=beats.x, y=beats.y, annotated=beats.annotated, lead=beats.lead, source=source,
                     skipped=json.dumps(beats.skipped), digest=_digest(beats.x, beats.y, beats.annotated))
    except OSError as e:
        log.warning("mitbih: beats not cached (%s)", e)


# What np.load raises on a missing, truncated or garbled .npz (found by damaging one): its zip reader's and its
# .npy header parser's errors.
CACHE_ERRORS = (OSError, ValueError, LookupError, EOFError, NotImplementedError, zipfile.BadZipFile,
                tokenize.TokenError)


def _read_cache(file: Path, source: str, params: BeatParams) -> RecordBeats | None:
    """The cached beats, or None if absent, stale (other source files) or corrupt."""
    try:
        with np.load(file) as z:
            stored = {k: z[k] for k in ("x", "y", "annotated", "lead", "skipped", "source", "digest")}
        skipped = json.loads(str(stored["skipped"]))
    except CACHE_ERRORS:  # missing, truncated or garbled: rebuild
        return None
    beats = RecordBeats(x=stored["x"], y=stored["y"], annotated=stored["annotated"], lead=str(stored["lead"]),
                        skipped=skipped)
    ok = str(stored["source"]) == source and str(stored["digest"]) == _digest(beats.x, beats.y, beats.annotated)
    return beats if ok and beats.x.shape == (len(beats.y), params.length) else None


def load_record(records_dir: Path, name: str, params: BeatParams, cache_dir: Path | None) -> RecordBeats:
    """Beats of record `name`, from the cache when it is valid, else built (and cached)."""
    path = Path(records_dir) / name
    source = _source_id(path)
    file = None if cache_dir is None else Path(cache_dir) / f"beats-{params.key()}" / f"{name}.npz"
    beats = _read_cache(file, source, params) if file is not None else None
    if beats is None:
        beats = build_record(path, params)
        if file is not None:
            _write_cache(file, beats, source)
    return beats


def beat_report(beats: dict[str, RecordBeats]) -> str:
    """Per record: lead, beats kept / annotations for each class, skipped symbols; then totals."""
    header = f"{'record':<7}{'lead':<6}" + "".join(f"{c + ' kept/ann':>15}" for c in CLASSES) + "  skipped"
    lines = [header]
    kept_total, ann_total, skipped_total = np.zeros(5, int), np.zeros(5, int), Counter()
    for name, b in beats.items():
        kept_total += b.kept
        ann_total += b.annotated
        skipped_total.update(b.skipped)
        cells = "".join(f"{f'{k}/{a}':>15}" for k, a in zip(b.kept, b.annotated, strict=True))
        lines.append(f"{name:<7}{b.lead:<6}{cells}  {_symbols(b.skipped)}")
    cells = "".join(f"{f'{k}/{a}':>15}" for k, a in zip(kept_total, ann_total, strict=True))
    lines.append(f"{'total':<13}{cells}  {_symbols(skipped_total)}")
    lines.append(f"{int(kept_total.sum())} beats kept of {int(ann_total.sum())} AAMI-labelled annotations "
                 f"in {len(beats)} records; {sum(skipped_total.values())} other annotations skipped")
    return "\n".join(lines)


def _symbols(counts: dict[str, int]) -> str:
    return " ".join(f"{s}:{n}" for s, n in sorted(counts.items())) or "-"


# --------------------------------------------------------------------------- the data modules
def _record_names(records) -> list[str] | None:
    return None if records is None else [str(r) for r in records]


class MITBIHDataModule(TensorDataModule):
    """`dataset=mitbih`: beats from the raw records in `records_dir` (default `<root>/mitdb`)."""

    class_names = CLASSES
    ALLOWED = {"test_fraction": number(lambda v: 0 < v < 1, "a number in (0, 1)"), "split_seed": integer(0),
               "split": one_of("random", "inter_patient"), "fs": integer(1, text="an integer >= 1 (Hz)"),
               "window_s": number(lambda v: v > 0, "a number > 0 (seconds)"),
               "rr_factor": number(lambda v: v > 0, "a number > 0"),
               "beat_length": integer(1, text="an integer >= 1 (samples)"), "cache": BOOL}

    def __init__(self, name: str = "mitbih", root: str = "data", records_dir: str | None = None,
                 records: list | None = None, split: str = "random", test_fraction: float = 0.2,
                 split_seed: int = 0, train_records: list | None = None, test_records: list | None = None,
                 lead: str = "MLII", fs: int = 125, window_s: float = 10.0, rr_factor: float = 1.2,
                 beat_length: int = 187, cache: bool = True, **kwargs) -> None:
        super().__init__(name, root, **kwargs)
        if not 0 < test_fraction < 1:
            raise ConfigError(f"dataset.test_fraction={test_fraction} must be in (0, 1)")
        self.records_dir = Path(records_dir) if records_dir else Path(root) / "mitdb"
        self.cache_dir = Path(root) / "mitbih_cache" if cache else None
        self.records, self.split = _record_names(records), split
        self.train_records = _record_names(DS1 if train_records is None else train_records)
        self.test_records = _record_names(DS2 if test_records is None else test_records)
        self.test_fraction, self.split_seed = test_fraction, split_seed
        self.params = BeatParams(lead=lead, fs=fs, window_s=window_s, rr_factor=rr_factor, length=beat_length)

    # -- which records ---------------------------------------------------------------------------
    def _listed(self) -> list[str]:
        """The records of `records_dir`: its RECORDS file (PhysioNet's list), else its headers."""
        listing = self.records_dir / "RECORDS"
        if listing.is_file():
            return listing.read_text().split()
        return sorted(p.stem for p in self.records_dir.glob("*.hea"))

    def wanted(self) -> list[str]:
        if self.split == "inter_patient":
            return self.train_records + self.test_records
        return self.records if self.records is not None else self._listed()

    def _missing(self, names: list[str]) -> list[str]:
        return [r for r in names if not all((self.records_dir / f"{r}{e}").is_file() for e in (".hea", ".dat", ".atr"))]

    def download(self) -> None:
        """Fetch the missing records (all 48 if the folder has none) from PhysioNet with wfdb."""
        names = self.wanted()
        missing = self._missing(names)
        if names and not missing:
            return
        import wfdb

        try:
            wfdb.dl_database("mitdb", dl_dir=str(self.records_dir), records=missing or "all", annotators=["atr"])
        except (OSError, ValueError) as e:  # no network, a server error (requests' and wfdb's are OSErrors)
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            what = f"records {', '.join(missing)} not" if missing else "no records"
            raise ConfigError(f"mitbih: {what} found in {self.records_dir} (expected <record>.hea/.dat/.atr) and "
                              f"the PhysioNet download failed ({reason}); copy the MIT-BIH Arrhythmia Database "
                              f"there or set dataset.records_dir") from None

    # -- beats and splits ------------------------------------------------------------------------
    def record_beats(self) -> dict[str, RecordBeats]:
        names = self.wanted()
        missing = self._missing(names)
        if missing or not names:
            what = f"records {', '.join(missing)} not" if missing else "no records"
            raise ConfigError(f"mitbih: {what} found in {self.records_dir} (expected <record>.hea/.dat/.atr); "
                              f"set dataset.records_dir or dataset.records")
        return {r: load_record(self.records_dir, r, self.params, self.cache_dir) for r in names}

    def report(self) -> str:
        return beat_report(self.record_beats())

    def load(self) -> tuple[Split, Split]:
        beats = self.record_beats()
        if self.split == "inter_patient":
            return _stack(beats, self.train_records), _stack(beats, self.test_records)
        every = _stack(beats, list(beats))
        order = torch.randperm(len(every), generator=torch.Generator().manual_seed(self.split_seed))
        n_test = round(self.test_fraction * len(every))
        return every.take(order[n_test:]), every.take(order[:n_test])


def _stack(beats: dict[str, RecordBeats], names: list[str]) -> Split:
    return Split(torch.from_numpy(np.concatenate([beats[r].x for r in names])),
                 torch.from_numpy(np.concatenate([beats[r].y for r in names])))


class MITBIHCSVDataModule(TensorDataModule):
    """`dataset=mitbih_csv`: `<root>/mitbih_train.csv` and `mitbih_test.csv` (187 values + label, no header)."""

    class_names = CLASSES

    FILES = ("mitbih_train.csv", "mitbih_test.csv")

    def load(self) -> tuple[Split, Split]:
        return tuple(self._read(Path(self.root) / f) for f in self.FILES)

    def _read(self, path: Path) -> Split:
        import pandas as pd

        if not path.is_file():
            raise ConfigError(f"mitbih_csv: {path} not found (expected {' and '.join(self.FILES)} in {path.parent}, "
                              f"187 values + label per row, no header); set dataset.root to their folder")
        try:
            table = pd.read_csv(path, header=None, dtype=np.float32).to_numpy()
        except ValueError as e:
            raise ConfigError(f"mitbih_csv: {path} is not a numeric CSV ({str(e).splitlines()[0]})") from None
        labels = table[:, -1] if table.ndim == 2 else np.empty(0)
        if table.shape[1:] != (188,) or not np.isin(labels, np.arange(len(CLASSES))).all():
            raise ConfigError(f"mitbih_csv: {path} has {table.shape[1] if table.ndim == 2 else 0} columns or labels "
                              f"outside 0-4; expected 188 (187 samples + a label in 0..4)")
        return Split(torch.from_numpy(np.ascontiguousarray(table[:, :-1])), torch.from_numpy(labels.astype(np.int64)))
