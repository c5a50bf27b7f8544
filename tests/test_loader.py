"""utils.load_dataset and its checks: files that are not datasets, labels, pixels, empty splits,
each refused with one line that says what is wrong and what to do."""
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_tiny_dataset

import utils

Q1 = ROOT / "hw1-q1.py"


def write_split(path, **arrays):
    """A course-layout file of 3 classes (every split has each), with `arrays` replacing some."""
    rng = np.random.RandomState(0)
    base = {}
    for split, n in (("train", 30), ("dev", 12), ("test", 12)):
        base[f"X{split}"] = rng.randint(0, 256, size=(n, 16)).astype(np.uint8)
        base[f"y{split}"] = (np.arange(n) % 3).astype(np.uint8)
    base.update(arrays)
    np.savez_compressed(path, **base)
    return Path(path)


def labels(n, classes):
    """n labels cycling through `classes`, as int64."""
    return np.resize(np.asarray(classes, dtype=np.int64), n)



def test_load_dataset_says_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(utils.DataError, match="is a folder; give the dataset file"):
        utils.load_dataset(tmp_path)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(utils.DataError, match=r"not a \.npz dataset") as info:
        utils.load_dataset(text)
    assert "pickle" not in str(info.value)
    assert str(info.value).endswith(f"--output {text} --force")  # rebuilds this file
    good = make_tiny_dataset(tmp_path / "Kuzushiji-MNIST.npz")
    cut = tmp_path / "Kuzushiji-MNIST-cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])  # the zip's directory lost
    with pytest.raises(utils.DataError, match="truncated") as info:
        utils.load_dataset(cut)
    assert f"--output {cut} --force" in str(info.value)
    assert utils.load_dataset(good)["train"][0].shape == (60, 16)
    default = tmp_path / "sub" / "Kuzushiji-MNIST.npz"
    default.parent.mkdir()
    default.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(default)
    assert str(info.value).endswith(f"{utils.BUILD_COMMAND} --force")  # the default file



def test_negative_labels_are_refused_naming_file_key_and_values(tmp_path):
    ytrain = labels(30, [0, 1, 2])
    ytrain[[4, 7, 9]] = [-1, -3, -1]
    path = write_split(tmp_path / "d.npz", ytrain=ytrain)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ytrain' has negative labels (-3, -1); class labels "
                               f"must be 0, 1, ..., C-1")


def test_negative_labels_in_the_medmnist_layout(tmp_path):
    rng = np.random.RandomState(1)
    arrays = {}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.randint(0, 256, size=(n, 4, 4)).astype(np.uint8)
        arrays[f"{split}_labels"] = labels(n, [0, 1, 2]).reshape(n, 1)
    arrays["val_labels"][2, 0] = -7
    np.savez(tmp_path / "oct.npz", **arrays)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(tmp_path / "oct.npz")
    assert str(info.value) == (f"{tmp_path / 'oct.npz'}: 'val_labels' has negative labels (-7); "
                               f"class labels must be 0, 1, ..., C-1")


def test_float_labels_are_refused_even_when_whole(tmp_path):
    path = write_split(tmp_path / "d.npz", ydev=labels(12, [0, 1, 2]).astype(np.float64))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ydev' has dtype float64 (values 0.0, 1.0, 2.0); class "
                               f"labels must be stored as integers 0, 1, ..., C-1")


def test_a_label_beyond_the_number_of_examples_is_refused(tmp_path):
    ytest = labels(12, [0, 1, 2])
    ytest[5] = 10 ** 9  # 10**9 outputs would not fit in memory
    path = write_split(tmp_path / "d.npz", ytest=ytest)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ytest' has label 1000000000, but the splits hold only "
                               f"54 examples; class labels must be 0, 1, ..., C-1")


def test_a_single_class_is_refused(tmp_path):
    path = write_split(tmp_path / "d.npz", ytrain=np.zeros(30, np.int64),
                       ydev=np.zeros(12, np.int64), ytest=np.zeros(12, np.int64))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: every label of 'ytrain', 'ydev', 'ytest' is 0; a "
                               f"classifier needs at least two classes")


def test_a_training_split_lacking_a_class_warns_once_and_keeps_all_classes(tmp_path, capsys):
    ytrain = labels(30, [0, 1, 2])  # class 3 is only in dev and test
    path = write_split(tmp_path / "d.npz", ytrain=ytrain, ydev=labels(12, [0, 1, 2, 3]),
                       ytest=labels(12, [3, 2, 1, 0]))
    data = utils.load_dataset(path)
    assert len(np.unique(data["train"][1])) == 3  # what the scripts counted before
    assert utils.class_count(data) == 4
    np.testing.assert_array_equal(data["train"][1], ytrain)
    assert data["train"][1].dtype == np.int64
    assert capsys.readouterr().err == (f"warning: {path}: 'ytrain' lacks class 3; the model still "
                                       f"gets all 4 outputs (labels 0..3)\n")
    utils.load_dataset(path)
    assert capsys.readouterr().err == ""  # once per file


def test_a_label_only_in_training_is_a_warning_with_every_gap(tmp_path, capsys):
    ytrain = labels(30, [0, 1, 2])
    ytrain[0] = 10  # was silently 11 classes
    path = write_split(tmp_path / "d.npz", ytrain=ytrain)
    data = utils.load_dataset(path)
    assert utils.class_count(data) == 11
    assert capsys.readouterr().err == (
        f"warning: {path}: 'ydev' lacks class 10; 'ytest' lacks class 10; no split has classes "
        f"3, 4, 5, 6, 7, ... (7 in all); the model still gets all 11 outputs (labels 0..10)\n")


def test_complete_splits_give_no_warning(tmp_path, capsys):
    data = utils.load_dataset(write_split(tmp_path / "d.npz"))
    assert utils.class_count(data) == 3
    assert capsys.readouterr().err == ""


def test_class_count_spans_all_three_splits():
    X = np.zeros((2, 3))
    data = {"train": (X, np.array([0, 1])), "dev": (X, np.array([4, 0])),
            "test": (X, np.array([2, 2]))}
    assert utils.class_count(data) == 5
    data["dev"] = (X[:0], np.array([], dtype=np.int64))  # an empty split counts for nothing
    assert utils.class_count(data) == 3


# ----------------------------------------------------------------------------- pixels, empty splits

@pytest.mark.parametrize("bad", [[np.nan, np.nan, np.inf], [-np.inf]])
def test_non_finite_pixels_are_a_data_error(tmp_path, bad):
    Xtrain = np.random.RandomState(2).rand(30, 16)
    Xtrain.flat[[3, 50, 400][:len(bad)]] = bad
    path = write_split(tmp_path / "d.npz", Xtrain=Xtrain)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (
        f"{path}: 'Xtrain' has {len(bad)} non-finite values (NaN or inf); the data is damaged: "
        f"rebuild it with: python download_kuzushiji_mnist.py --output {path} --force")


@pytest.mark.parametrize("shape", [(0, 16), (0, 4, 4)])
def test_an_empty_split_is_said_to_be_empty_not_truncated(tmp_path, shape):
    path = write_split(tmp_path / "d.npz", Xdev=np.zeros(shape, np.uint8),
                       ydev=np.zeros(0, np.uint8))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: the dev split is empty ('Xdev' has 0 rows); rebuild it "
                               f"with: python download_kuzushiji_mnist.py --output {path} --force")


def test_empty_labels_beside_images_are_said_to_be_empty(tmp_path):
    path = write_split(tmp_path / "d.npz", ytest=np.zeros(0, np.uint8))
    with pytest.raises(utils.DataError, match=r"the test split is empty \('ytest' has 0 rows\)"):
        utils.load_dataset(path)




# ----------------------------------------------------------------------------- pixel scales

@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16])
def test_integer_pixels_of_any_dtype_are_scaled_as_uint8_is(tmp_path, dtype):
    """0..255 images stored as wider integers are the same images: the same floats as uint8."""
    pixels = {f"X{split}": np.random.RandomState(i).randint(0, 256, size=(n, 16))
              for i, (split, n) in enumerate((("train", 30), ("dev", 12), ("test", 12)))}
    as_uint8 = utils.load_dataset(write_split(tmp_path / "a.npz", **{
        key: X.astype(np.uint8) for key, X in pixels.items()}))
    as_other = utils.load_dataset(write_split(tmp_path / "b.npz", **{
        key: X.astype(dtype) for key, X in pixels.items()}))
    for split in ("train", "dev", "test"):
        assert np.array_equal(as_other[split][0], as_uint8[split][0])
    assert as_other["train"][0].max() <= 255 / 256


def test_integer_pixels_outside_0_to_255_are_refused(tmp_path):
    X = np.random.RandomState(0).randint(0, 256, size=(30, 16)).astype(np.int64)
    X[2, 3] = 300
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(write_split(tmp_path / "d.npz", Xtrain=X))
    assert str(info.value) == (f"{tmp_path / 'd.npz'}: 'Xtrain' has integer pixels from 0 to "
                               f"300; expected 8-bit images, 0..255")


def test_unscaled_float_pixels_are_refused_naming_the_range(tmp_path):
    """Floats up to 255 would train to chance, silently or with advice about the learning rate;
    the loader says what it found and what it expects."""
    X = np.random.RandomState(0).randint(0, 256, size=(12, 16)).astype(np.float64)
    path = write_split(tmp_path / "f.npz", Xdev=X)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (
        f"{path}: 'Xdev' has float pixels up to {X.max():g}; float pixels must be scaled to "
        f"[0, 1] (store 0..255 images as integers, which are scaled by 1/256)")


def test_float_pixels_in_0_to_1_are_used_as_they_are(tmp_path):
    X = np.random.RandomState(0).rand(12, 16)
    X[0, 0] = 1.0
    data = utils.load_dataset(write_split(tmp_path / "f.npz", Xtest=X))
    assert np.array_equal(data["test"][0], X)


# ----------------------------------------------------------------------------- layouts

def test_course_layout_is_scaled_by_1_over_256(tmp_path):
    path = make_tiny_dataset(tmp_path / "d.npz")
    with np.load(path) as raw:
        Xtrain = raw["Xtrain"]
    data = utils.load_dataset(path)
    X, y = data["train"]
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X, Xtrain / 256)
    Xb, _ = utils.load_dataset(path, bias=True)["dev"]
    assert Xb.shape[1] == X.shape[1] + 1
    np.testing.assert_array_equal(Xb[:, -1], 1.0)
    np.testing.assert_array_equal(Xb[:, :-1], data["dev"][0])


def test_float_layout_and_other_image_sizes(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", 8), ("dev", 4), ("test", 4)):
        arrays[f"X{split}"] = rng.rand(n, 8, 8)
        arrays[f"y{split}"] = rng.randint(0, 3, size=n)
    np.savez(tmp_path / "f.npz", **arrays)
    data = utils.load_dataset(tmp_path / "f.npz")
    np.testing.assert_array_equal(data["test"][0], arrays["Xtest"].reshape(4, 64))


def test_medmnist_layout(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 5), ("test", 6)):
        arrays[f"{split}_images"] = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.randint(0, 4, size=(n, 1)).astype(np.uint8)
    np.savez(tmp_path / "octmnist.npz", **arrays)
    data = utils.load_dataset(tmp_path / "octmnist.npz", bias=True)
    X, y = data["dev"]
    assert X.shape == (5, 785) and y.shape == (5,)
    np.testing.assert_array_equal(y, arrays["val_labels"][:, 0])
    np.testing.assert_array_equal(X[:, :-1], arrays["val_images"].reshape(5, -1) / 256)


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(utils.DataError, match="python download_kuzushiji_mnist.py --output"):
        utils.load_dataset(tmp_path / "elsewhere.npz")
    with pytest.raises(utils.DataError, match=r"no such file\. Create it with: python "
                                              r"download_kuzushiji_mnist.py$"):
        utils.load_dataset(tmp_path / "Kuzushiji-MNIST.npz")


def test_truncated_file(tmp_path):
    path = make_tiny_dataset(tmp_path / "d.npz")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(utils.DataError, match=r"d\.npz: not a \.npz dataset .*truncated"):
        utils.load_dataset(path)
    path.write_text("this is not a zip file")
    with pytest.raises(utils.DataError, match="not a .npz dataset"):
        utils.load_dataset(path)


def test_missing_keys_and_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "k.npz", Xtrain=np.zeros((2, 4)), ytrain=np.zeros(2, int))
    with pytest.raises(utils.DataError, match=r"k\.npz: missing keys Xdev, Xtest, ydev, ytest"):
        utils.load_dataset(tmp_path / "k.npz")
    arrays = {f"{p}{s}": np.zeros((3, 4)) if p == "X" else np.zeros(3, int)
              for p in "Xy" for s in ("train", "dev", "test")}
    arrays["ydev"] = np.zeros(2, int)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(utils.DataError, match="'Xdev' has 3 examples but 'ydev' has 2 labels"):
        utils.load_dataset(tmp_path / "m.npz")
