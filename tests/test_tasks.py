"""Task registry and verified data loading: real files, and clear errors for bad input."""
import shutil

import pandas as pd
import pytest

from papa_utils import TASKS, DataError, Task, get_task, load_task


def test_every_task_declares_what_the_pipeline_needs():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "qnli", "mnli", "rte", "qqp", "stsb", "ner", "pos"}
    assert get_task("cola").length == 64 and get_task("mrpc").length == 128 and get_task("ner").length == 128
    assert get_task("stsb").is_regression and get_task("stsb").metrics == ("pearson", "spearman")
    assert get_task("mnli").num_labels == 3 and get_task("mnli").is_pair
    assert get_task("ner").token_task and get_task("ner").num_labels == 9 and get_task("pos").num_labels == 47
    assert get_task("mrpc").metrics == ("f1", "accuracy") and get_task("cola").metric == "matthews_corr"


@pytest.mark.parametrize("name,split,rows", [
    ("cola", "train", 8551), ("cola", "validation", 1043), ("sst2", "validation", 872),
    ("mrpc", "train", 3668), ("mnli", "validation", 9815), ("mnli", "validation_mismatched", 9832),
    ("rte", "train", 2490), ("stsb", "validation", 1500), ("qnli", "validation", 5463),
    ("ner", "train", 14041), ("pos", "validation", 3250),
])
def test_local_splits_load_verified(data_dir, name, split, rows):
    data = load_task(name, split)
    assert len(data) == rows
    assert len(data.checksum) == 64 and data.note == ""


def test_mnli_train_is_the_documented_subset_and_says_so(data_dir, caplog):
    from papa_utils.settings import tasks

    tasks._NOTED.clear()  # logged once per process: this test reads the first time
    data = load_task("mnli", "train")
    assert len(data) == 19739 and data.source.endswith("train_subset.parquet")
    assert "19,739 of the 392,702 official pairs" in data.note
    assert "19,739 of the 392,702" in caplog.text


@pytest.mark.parametrize("name", ["qnli", "qqp"])
def test_missing_training_data_names_the_hub(data_dir, name):
    with pytest.raises(DataError, match=rf"no data for task {name} split train under \$PAPA_DATA_DIR/glue/{name} "
                                        rf".*Get it from the Hugging Face Hub \(nyu-mll/glue, config {name}\)"):
        load_task(name, "train")


def test_unknown_task_and_split():
    with pytest.raises(KeyError, match="unknown task 'sst5'; known tasks: cola, sst2, mrpc"):
        load_task("sst5")
    with pytest.raises(DataError, match="task 'cola' has no split 'test'; its splits are train, validation"):
        load_task("cola", "test")


def test_missing_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPA_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"PAPA_DATA_DIR=.*nowhere is not a folder\. Point it at a folder laid out "
                                        r"as glue/<task>/<split>\.parquet"):
        load_task("cola")


def test_no_data_folder_and_no_hub(monkeypatch):
    monkeypatch.delenv("PAPA_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="PAPA_DATA_DIR is not set and the Hugging Face Hub is not reachable"):
        load_task("cola")


@pytest.fixture
def copied_data(data_dir, tmp_path, monkeypatch):
    (tmp_path / "glue" / "cola").mkdir(parents=True)
    shutil.copy(data_dir / "glue/cola/validation.parquet", tmp_path / "glue/cola/validation.parquet")
    monkeypatch.setenv("PAPA_DATA_DIR", str(tmp_path))
    return tmp_path


def test_checksum_mismatch_is_refused(copied_data):
    path = copied_data / "glue/cola/validation.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"checksum mismatch for .*glue/cola/validation\.parquet: sha256 [0-9a-f]{64}, "
                                        r"expected 67726408037c.*copy it again"):
        load_task("cola", "validation")


def test_a_split_is_read_once_per_version_of_its_file_and_of_the_manifest(copied_data, monkeypatch):
    """Loaded twice, a split is read and hashed once, and a caller's change to its frame never reaches the next
    load. The file changed in place (same size, its modification time put back) is read again, and refused; so
    is it when the manifest stops listing it (read unverified: a damaged Parquet file)."""
    import os

    import papa_utils.settings.tasks as tasks

    path = copied_data / "glue/cola/validation.parquet"
    hashed, sha256_file = [], tasks.sha256_file
    monkeypatch.setattr(tasks, "sha256_file", lambda p: hashed.append(p) or sha256_file(p))
    first = load_task("cola", "validation")
    first.frame.loc[0, "sentence"] = "changed by a caller"
    second = load_task("cola", "validation")
    assert len(hashed) == 1 and second.frame.loc[0, "sentence"] != "changed by a caller"
    assert second.checksum == first.checksum
    times = os.stat(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(path).st_size == times.st_size and os.stat(path).st_mtime_ns == times.st_mtime_ns
    with pytest.raises(DataError, match="checksum mismatch"):
        load_task("cola", "validation")
    monkeypatch.setattr(tasks, "_expected_checksums", lambda: {})
    with pytest.raises(DataError, match="as Parquet .*the file is damaged"):
        load_task("cola", "validation")
    assert len(hashed) == 3


@pytest.fixture
def unlisted(monkeypatch):
    """Files the checksum manifest does not list (e.g. a user's own Hub download) are read unverified."""
    import papa_utils.settings.tasks

    monkeypatch.setattr(papa_utils.settings.tasks, "_expected_checksums", lambda: {})


def test_unlisted_corrupted_parquet_is_refused(copied_data, unlisted):
    (copied_data / "glue/cola/train.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"cannot read .*glue/cola/train\.parquet as Parquet .*the file is damaged"):
        load_task("cola", "train")


def test_wrong_columns_are_refused(copied_data, unlisted):
    pd.DataFrame({"text": ["a b"], "label": [1]}).to_parquet(copied_data / "glue/cola/train.parquet")
    with pytest.raises(DataError, match=r"has no column\(s\) \['sentence'\] needed by task 'cola'"):
        load_task("cola", "train")


def test_wrong_column_types_are_refused(copied_data, unlisted):
    pd.DataFrame({"sentence": [1.5, 2.0], "label": [1, 0]}).to_parquet(copied_data / "glue/cola/train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet: column 'sentence' should hold strings"):
        load_task("cola", "train")
    pd.DataFrame({"sentence": ["a", "b"], "label": ["yes", "no"]}).to_parquet(copied_data / "glue/cola/train.parquet")
    with pytest.raises(DataError, match=r"column 'label' should be numeric"):
        load_task("cola", "train")


def test_a_subset_is_named_by_the_rows_it_holds(data_dir):
    """Two different subsets of one file never share a checksum; the same subset always has the same one."""
    full = load_task("sst2", "train")
    subsets = {"100": full.sample(100), "200": full.sample(200), "100 seed 1": full.sample(100, seed=1),
               "first 100": full.head(100)}
    assert len({s.checksum for s in subsets.values()}) == 4
    assert full.sample(100).checksum == subsets["100"].checksum
    assert all(s.file_checksum == full.checksum == full.file_checksum for s in subsets.values())
    assert full.sample(None).checksum == full.checksum == full.sample(len(full)).checksum  # the whole file
    # a subset of a subset is named by its parent and its own rows
    assert subsets["200"].head(100).checksum != subsets["100"].checksum
    assert subsets["200"].head(100).frame.equals(subsets["200"].frame.iloc[:100])


def test_matthews_correlation_and_f1_are_the_standard_ones():
    """MCC in its multiclass form (Gorodkin's R_K), written out here from the confusion matrix, and F1 of the
    positive class; both in points."""
    import numpy as np

    from papa_utils.core.metrics import compute_metrics

    truth = np.array([0, 1, 2, 0, 1, 2, 2, 1, 0, 2])
    guess = np.array([0, 2, 2, 0, 1, 1, 2, 1, 1, 2])
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (truth, guess), 1)
    t, p, c, s = confusion.sum(1), confusion.sum(0), np.trace(confusion), confusion.sum()
    expected = (c * s - t @ p) / np.sqrt((s ** 2 - p @ p) * (s ** 2 - t @ t))
    three_way = Task("toy", "toy", ("toy", None), ("sentence",), "label", 3, ("matthews_corr",), 64)
    assert compute_metrics(three_way, guess, truth)["matthews_corr"] == pytest.approx(100 * expected)
    binary = compute_metrics(get_task("mrpc"), np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1]))
    assert binary["f1"] == pytest.approx(100 * 2 * 2 / (3 + 3)) and binary["accuracy"] == pytest.approx(60)
    constant = compute_metrics(get_task("cola"), np.ones(6, int), np.array([0, 1] * 3))
    assert constant == {"matthews_corr": 0.0}  # a constant predictor has no correlation, not NaN
