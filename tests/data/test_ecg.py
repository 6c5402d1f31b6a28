"""MIT-BIH beats: the pipeline on synthetic WFDB records (beat count, labels, 125 Hz, 1.2 x RR cut and
padding, skipped symbols, lead choice, cache rebuilds), the real records when present, the splits,
the preprocessed CSVs, and `train.py experiment=heunnet/ecg` end to end."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
import torch
import wfdb

import odenets.data.ecg as ecg
from helpers import REPO, SHARED, results_under
from helpers.recurrent import train_cli
from odenets.data.ecg import BeatParams, MITBIHCSVDataModule, MITBIHDataModule, beat_report, load_record
from odenets.errors import ConfigError

FS = 360
SLOW_HZ = 0.5  # the synthetic MLII lead: a 0.5 Hz sine, so every 10 s window spans full periods
# (sample at 360 Hz, symbol). Window 1 (0-10 s): beats every 0.8 s; window 2: every 2 s, plus a
# non-AAMI beat B; window 3 (20-25 s): a single beat, so its RR is the record's median (0.8 s).
ANNOTATIONS = [(288 * k, s) for k, s in zip(range(1, 13), "NNAVF/fQLRej", strict=True)]
ANNOTATIONS += [(3780 + 720 * i, s) for i, s in enumerate("aJSEN")] + [(7020, "B"), (7560, "N")]
ANNOTATIONS += [(100, "+"), (5000, "~"), (5100, "x")]
AAMI_LABELS = [ecg.AAMI[s] for _, s in sorted(ANNOTATIONS) if s in ecg.AAMI]


def write_record(folder, name: str = "900", seconds: float = 25.0, lead_first: str = "V1") -> None:
    """A two-lead record at 360 Hz (MLII second, so the lead is chosen by name) and its annotations."""
    t = np.arange(int(seconds * FS)) / FS
    mlii = np.sin(2 * np.pi * SLOW_HZ * t)
    signals = np.stack([0.3 * np.cos(2 * np.pi * 3 * t), mlii], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=[lead_first, "MLII"], p_signal=signals,
                fmt=["16", "16"], adc_gain=[2000.0, 2000.0], baseline=[0, 0], write_dir=str(folder))
    samples, symbols = zip(*sorted(ANNOTATIONS), strict=True)
    wfdb.wrann(name, "atr", np.array(samples), list(symbols), write_dir=str(folder))


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "mitdb"
    for name in ("900", "901", "902"):
        write_record(folder, name)
    (folder / "RECORDS").write_text("900\n901\n902\n")
    return folder


def test_beats_labels_and_skipped_symbols(records):
    beats = load_record(records, "900", BeatParams(), cache_dir=None)
    assert beats.x.shape == (len(AAMI_LABELS), 187) and beats.x.dtype == np.float32
    assert beats.y.tolist() == AAMI_LABELS
    assert beats.kept.tolist() == beats.annotated.tolist() == np.bincount(AAMI_LABELS, minlength=5).tolist()
    assert beats.skipped == {"+": 1, "~": 1, "x": 1, "B": 1} and beats.lead == "MLII"
    assert beats.x.min() >= 0 and beats.x.max() <= 1


def test_beat_is_the_125hz_window_cut_to_1_2_rr_and_zero_padded(records):
    beats = load_record(records, "900", BeatParams(), cache_dir=None)
    # Beat 0: R peak at 360 Hz sample 288 -> 125 Hz sample 100; RR 0.8 s = 100 samples -> 120 kept.
    # Window 1 holds 5 full periods of the sine, so min-max normalisation gives (sin + 1) / 2.
    k = np.arange(120)
    expected = (np.sin(2 * np.pi * SLOW_HZ * (100 + k) / 125) + 1) / 2
    np.testing.assert_allclose(beats.x[0, :120], expected, atol=0.01)
    assert not beats.x[0, 120:].any()


def test_beats_stop_at_187_and_at_their_window(records):
    x = load_record(records, "900", BeatParams(), cache_dir=None).x
    assert not x[11, 50:].any()  # R peak at 125 Hz sample 1200, 50 samples before window 1 ends
    assert all(np.count_nonzero(b) >= 185 for b in x[12:17])  # RR 2 s: 1.2 x 250 samples, cut to 187
    assert not x[17, 120:].any() and np.count_nonzero(x[17]) > 110  # lone beat: the record's median RR


def test_first_signal_when_the_lead_is_missing(records):
    beats = load_record(records, "900", BeatParams(lead="V2"), cache_dir=None)
    assert beats.lead == "V1"


def test_cache_is_reused_and_rebuilt_on_a_parameter_change(records, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    built = []
    real_build = ecg.build_record
    monkeypatch.setattr(ecg, "build_record", lambda path, params: built.append(params) or real_build(path, params))
    first = load_record(records, "900", BeatParams(), cache)
    again = load_record(records, "900", BeatParams(), cache)
    assert len(built) == 1 and np.array_equal(first.x, again.x) and again.skipped == first.skipped
    load_record(records, "900", BeatParams(rr_factor=1.1), cache)
    assert len(built) == 2 and len(list(cache.glob("beats-*"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_cache_is_detected_and_rebuilt(records, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    reference = load_record(records, "900", BeatParams(), cache)
    file, = cache.glob("beats-*/900.npz")
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3] ^= 0xFF  # inside the beat array
    else:
        data = b"not a cache"
    file.write_bytes(bytes(data))
    built = []
    real_build = ecg.build_record
    monkeypatch.setattr(ecg, "build_record", lambda path, params: built.append(1) or real_build(path, params))
    rebuilt = load_record(records, "900", BeatParams(), cache)
    assert built == [1] and np.array_equal(rebuilt.x, reference.x)
    assert load_record(records, "900", BeatParams(), cache).x.shape == reference.x.shape and built == [1]


@pytest.mark.parametrize("suffix", [".dat", ".atr"])
def test_a_truncated_record_is_named(records, suffix):
    path = records / f"900{suffix}"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match=f"record {records / '900'}: .*(unreadable|truncated)"):
        load_record(records, "900", BeatParams(), cache_dir=None)


def test_a_changed_record_rebuilds(records, tmp_path):
    cache = tmp_path / "cache"
    before = load_record(records, "900", BeatParams(), cache)
    wfdb.wrann("900", "atr", np.array([288, 576, 864]), ["N", "N", "V"], write_dir=str(records))
    after = load_record(records, "900", BeatParams(), cache)
    assert len(before.y) == len(AAMI_LABELS) and after.y.tolist() == [0, 0, 2]


def test_random_split_is_80_20_seeded_and_disjoint(records, tmp_path):
    def split(seed):
        dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(records), split_seed=seed)
        dm.setup()
        return dm

    dm = split(0)
    n = 3 * len(AAMI_LABELS)
    assert len(dm.train) + len(dm.test) == n and len(dm.test) == round(0.2 * n)
    assert dm.train.x.shape[1:] == (187,) and dm.train.y.dtype == torch.int64
    assert sorted(torch.cat([dm.train.y, dm.test.y]).tolist()) == sorted(AAMI_LABELS * 3)  # a partition
    assert torch.equal(split(0).test.x, dm.test.x) and not torch.equal(split(1).test.x, dm.test.x)


def test_inter_patient_split_by_record_lists(records, tmp_path):
    dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(records), split="inter_patient",
                          train_records=[900, 901], test_records=["902"])
    dm.setup()
    assert len(dm.train) == 2 * len(AAMI_LABELS) and dm.test.y.tolist() == AAMI_LABELS


def offline(*args, **kwargs):
    raise ConnectionError("no network")


def test_missing_records_are_one_clear_error(records, tmp_path, monkeypatch):
    dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(records), split="inter_patient")  # DS1/DS2
    with pytest.raises(ConfigError, match=r"records 101, 106, .* not found in .*mitdb"):
        dm.setup()

    monkeypatch.setattr(wfdb, "dl_database", offline)
    with pytest.raises(ConfigError, match=r"download failed \(no network\).*dataset.records_dir"):
        dm.prepare_data()
    MITBIHDataModule(root=str(tmp_path), records_dir=str(records)).prepare_data()  # all present: no download


def test_report_lists_every_record_and_the_totals(records, tmp_path):
    dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(records))
    text = dm.report()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["record", "lead", "N"] and [ln.split()[0] for ln in lines[1:4]] == ["900", "901",
                                                                                                        "902"]
    assert lines[-2].split()[0] == "total" and lines[-2].endswith("+:3 B:3 x:3 ~:3")
    assert lines[-1].startswith(f"{3 * len(AAMI_LABELS)} beats kept of {3 * len(AAMI_LABELS)}")


def test_report_script(records, tmp_path, capsys, monkeypatch):
    main = runpy.run_path(str(REPO / "scripts" / "ecg_report.py"))["main"]
    assert main([f"dataset.records_dir={records}", f"dataset.root={tmp_path}"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("900    MLII")
    monkeypatch.setattr(wfdb, "dl_database", offline)
    assert main([f"dataset.records_dir={tmp_path / 'none'}", "dataset.records=[1]"]) == 2
    assert "mitbih: records 1 not found" in capsys.readouterr().err


REAL = SHARED / "data" / "mitdb"
# The whole database: AAMI beats per class N, S, V, F, Q (PhysioNet's reference annotations), and
# annotation counts of five records spot-checked one by one.
DATABASE_TOTALS = [90631, 2781, 7236, 803, 8043]
REAL_COUNTS = {"100": ([2239, 33, 1, 0, 0], {"+": 1}, "MLII"),
               "104": ([163, 0, 2, 0, 2064], {"+": 45, "~": 37}, "V5"),
               "106": ([1507, 0, 520, 0, 0], {"+": 41, "~": 30}, "MLII"),
               "108": ([1740, 4, 17, 2, 0], {"+": 1, "x": 11, "|": 8, "~": 41}, "MLII"),
               "113": ([1789, 6, 0, 0, 0], {"+": 1}, "MLII")}


@pytest.mark.skipif(not (REAL / "100.hea").is_file(), reason=f"real MIT-BIH records not found in {REAL}")
def test_real_records(tmp_path):
    dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(REAL))
    beats = dm.record_beats()
    assert len(beats) == 48 and set(REAL_COUNTS) <= set(beats)
    for name, (counts, skipped, lead) in REAL_COUNTS.items():
        b = beats[name]
        assert b.kept.tolist() == b.annotated.tolist() == counts and b.skipped == skipped and b.lead == lead
        assert b.x.shape == (sum(counts), 187) and 0 <= b.x.min() and b.x.max() <= 1
    assert sum(b.kept for b in beats.values()).tolist() == DATABASE_TOTALS
    assert f"{sum(DATABASE_TOTALS)} beats kept of {sum(DATABASE_TOTALS)}" in beat_report(beats)
    dm.setup()
    assert (len(dm.train), len(dm.test)) == (87595, 21899)  # the papers' 80/20 split of 109,494 beats


def write_csv(path, rows: int, labels=None, columns: int = 188) -> None:
    rng = np.random.default_rng(0)
    table = rng.random((rows, columns)).round(6)
    table[:, -1] = labels if labels is not None else np.arange(rows) % 5
    np.savetxt(path, table, delimiter=",", fmt="%.6e")


def test_mitbih_csv(tmp_path):
    write_csv(tmp_path / "mitbih_train.csv", 10)
    write_csv(tmp_path / "mitbih_test.csv", 5)
    dm = MITBIHCSVDataModule("mitbih_csv", root=str(tmp_path))
    dm.setup()
    assert dm.train.x.shape == (10, 187) and dm.test.x.shape == (5, 187)
    assert dm.train.y.tolist() == [0, 1, 2, 3, 4] * 2 and dm.train.x.dtype == torch.float32


@pytest.mark.parametrize("columns,labels,match", [
    (150, None, "has 150 columns"), (188, [7] * 4, "labels outside 0-4"), (188, [0.5] * 4, "labels outside 0-4"),
])
def test_mitbih_csv_bad_files(tmp_path, columns, labels, match):
    write_csv(tmp_path / "mitbih_train.csv", 4, labels, columns)
    write_csv(tmp_path / "mitbih_test.csv", 4)
    with pytest.raises(ConfigError, match=match):
        MITBIHCSVDataModule("mitbih_csv", root=str(tmp_path)).setup()


def test_mitbih_csv_missing(tmp_path):
    with pytest.raises(ConfigError, match="mitbih_train.csv not found"):
        MITBIHCSVDataModule("mitbih_csv", root=str(tmp_path)).setup()


@pytest.mark.slow
def test_heunnet_ecg_experiment_runs(records, tmp_path):
    out = train_cli("experiment=heunnet/ecg", "model=lstm", f"dataset.records_dir={records}",
                    f"paths.data_dir={tmp_path / 'data'}", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    assert record["status"] == "completed" and name.startswith("mitbih-lstm-")
    assert {"train/loss", "train/acc", "test/loss", "test/acc"} <= set(record["history"][0])
    assert list((tmp_path / "data" / "mitbih_cache").glob("beats-*/90[012].npz"))
