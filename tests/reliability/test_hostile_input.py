"""Files medseg's team did not write: a named pipe among the inputs, palette-colour and Siemens mosaic
DICOM from pydicom's and nibabel's test data, and radiographs with impossible pixel headers. Each is read
as the image it is (a mosaic as its volume, checked against dcm2niix) or refused in one line naming the
file, never read as a wrong image, and never stops or hangs the good input beside it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import PIL.Image
import pydicom
import pytest
from dicom_factory import write_radiograph
from infer_models import save_threshold_checkpoint
from space import assert_same_voxels_in_space
from system_tools import require_tool

from medseg.errors import InputError
from medseg.io.reader import read_image

PALETTE = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_palette.dcm"
MOSAICS = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
#: A command that hangs is stopped after this long and fails the test.
TIMEOUT_S = 120


def _medseg(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_threshold_checkpoint(tmp_path_factory.mktemp("m") / "m.pt", 2, [1.0, 1.0], [32, 32])


def test_a_named_pipe_beside_a_good_image_neither_hangs_nor_stops_it(datasets_dir, model, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(datasets_dir / "cxr_lung_mc_shenzhen" / "images" / "CHNCXR_0006_0.png", folder / "xray.png")
    os.mkfifo(folder / "pipe.png")  # nobody ever writes to it: opening it for reading would block
    info = _medseg("info", str(folder / "pipe.png"), cwd=tmp_path)
    assert info.returncode == 2 and "not a regular file" in info.stderr
    infer = _medseg(
        "infer", str(folder), "-m", str(model), "-o", str(tmp_path / "out"), "--force-domain", cwd=tmp_path
    )
    assert infer.returncode == 0, infer.stderr
    items = {
        item["input"]: item for item in json.loads((tmp_path / "out" / "summary.json").read_text())["items"]
    }
    assert items["xray.png"]["status"] == "done"
    assert items["pipe.png"]["status"] == "skipped" and "not a regular file" in items["pipe.png"]["reason"]


def test_palette_colour_images_are_refused_not_segmented(tmp_path):
    with pytest.raises(
        InputError, match=r"examples_palette\.dcm: PALETTE COLOR image: its values are indices"
    ):
        read_image(PALETTE)
    folder = tmp_path / "palette"
    folder.mkdir()
    shutil.copy(PALETTE, folder)
    info = json.loads(_medseg("info", str(folder), cwd=tmp_path).stdout)
    [series] = [s for study in info["studies"] for s in study["series"]]
    assert "PALETTE COLOR image" in series["problem"]


def test_a_siemens_mosaic_is_read_as_its_volume_where_dcm2niix_puts_it(tmp_path):
    folder = tmp_path / "dwi"
    folder.mkdir()
    with gzip.open(MOSAICS / "siemens_dwi_1000.dcm.gz") as packed:  # 48 slices of 128x128 in 896x896
        (folder / "dwi.dcm").write_bytes(packed.read())
    image = read_image(folder / "dwi.dcm")
    assert image.shape == (128, 128, 48) and read_image(folder).shape == (128, 128, 48)
    dcm2niix = require_tool("dcm2niix", "dcm2niix")  # an independent reader: the same voxels in space
    subprocess.run([dcm2niix, "-o", str(tmp_path), "-f", "reference", str(folder)], check=True)
    reference = nibabel.load(tmp_path / "reference.nii")
    assert_same_voxels_in_space(image.array, image.affine, np.asarray(reference.dataobj), reference.affine)
    model = save_threshold_checkpoint(tmp_path / "m3d.pt", 3, [1.8, 1.8, 3.0], [32, 32, 16])
    run = _medseg(
        "infer", str(folder), "-m", str(model), "-o", str(tmp_path / "out"), "--force-domain", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "no DICOM SEG: a SEG references single-slice images" in run.stderr
    [result] = (tmp_path / "out").glob("*/result.json")
    record = json.loads(result.read_text())
    assert record["grid"]["shape"] == [128, 128, 48] and "seg.dcm" not in record["outputs"]
    assert record["warnings"] and (result.parent / "mask.nii.gz").is_file()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("0.dcm", "a 256x256 mosaic is not a 7x7 grid of whole slices"),  # dcm2niix and nibabel disagree
        ("csa_slice_norm.dcm", "no pixel data"),
    ],
)
def test_siemens_mosaics_that_do_not_tile_are_refused_not_read_as_one_slice(name, words, tmp_path):
    with pytest.raises(InputError, match=words):
        read_image(MOSAICS / name)
    folder = tmp_path / "mosaic"
    folder.mkdir()
    shutil.copy(MOSAICS / name, folder)
    info = json.loads(_medseg("info", str(folder), cwd=tmp_path).stdout)
    [series] = [s for study in info["studies"] for s in study["series"]]
    assert words in series["problem"]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda ds: setattr(ds, "RescaleSlope", "NaN"), "RescaleSlope 'NaN' is not"),
        (lambda ds: setattr(ds, "RescaleSlope", "0"), "RescaleSlope 0 would make every pixel one value"),
        (lambda ds: setattr(ds, "BitsStored", 0), "BitsStored 0 does not fit BitsAllocated 16"),
        (lambda ds: setattr(ds, "BitsStored", 17), "BitsStored 17 does not fit BitsAllocated 16"),
        # a single 2D file gets the geometry checks a series' slices get; a bad spacing is never guessed
        (lambda ds: setattr(ds, "ImagePositionPatient", ["NaN", 0, 0]), "ImagePositionPatient 'NaN.*finite"),
        (lambda ds: setattr(ds, "ImageOrientationPatient", [0] * 6), "not two orthogonal unit vectors"),
        (lambda ds: setattr(ds, "ImagerPixelSpacing", ["NaN", 1]), "ImagerPixelSpacing 'NaN.*finite"),
        (lambda ds: setattr(ds, "ImagerPixelSpacing", [0, 1]), "ImagerPixelSpacing .* two positive numbers"),
    ],
)
def test_a_radiograph_with_an_impossible_pixel_header_is_refused(edit, words, tmp_path):
    path = write_radiograph(tmp_path / "dx.dcm", np.full((32, 32), 100, np.uint16))
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)
    with pytest.raises(InputError, match=words) as raised:
        read_image(path)
    assert str(raised.value).startswith(str(path))


def test_a_dicom_file_without_preamble_or_file_meta_is_read(tmp_path):
    """Some exports write the dataset alone (no 128-byte preamble, no file meta): pydicom reads it with
    force=True, and so does medseg, giving the same image as the complete file."""
    whole = write_radiograph(
        tmp_path / "whole.dcm", np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) % 4000
    )
    ds = pydicom.dcmread(whole)
    bare = tmp_path / "bare.dcm"
    with open(bare, "wb") as handle:  # the data set alone, implicit VR little endian, as such exports write
        pydicom.filewriter.write_dataset(pydicom.filebase.DicomFileLike(handle), ds)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_image(bare).array, read_image(whole).array)


def test_a_metaimage_header_cannot_point_outside_its_folder(tmp_path):
    outside = tmp_path / "secret.raw"
    outside.write_bytes(bytes(64))
    header = tmp_path / "inputs" / "volume.mhd"
    header.parent.mkdir()
    fields = ["ObjectType = Image", "NDims = 3", "DimSize = 4 4 4", "ElementType = MET_UCHAR"]
    header.write_text("\n".join([*fields, "ElementDataFile = ../secret.raw"]) + "\n")
    with pytest.raises(InputError, match=r"volume\.mhd: its ElementDataFile '\.\./secret\.raw' lies outside"):
        read_image(header)


def test_convert_writes_a_radiograph_as_the_2d_reader_reads_it(tmp_path):
    """convert refused every radiograph ("no ImagePositionPatient"); it now writes what infer reads."""
    stored = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 3) % 4000
    folder = tmp_path / "dx"
    folder.mkdir()
    path = write_radiograph(folder / "dx.dcm", stored, photometric="MONOCHROME1", imager_spacing=[0.2, 0.2])
    expected = read_image(path)
    for source in (folder, path):
        out = tmp_path / f"{source.name}.nii.gz"
        done = _medseg("convert", str(source), str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        written = read_image(out)
        np.testing.assert_array_equal(written.array, expected.array)
        np.testing.assert_allclose(written.spacing, expected.spacing)


def test_a_palette_colour_png_is_refused_and_a_grey_palette_read(tmp_path):
    indices = (np.arange(32 * 32).reshape(32, 32) % 4).astype(np.uint8)
    for name, palette in (
        ("colour", [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]),
        ("grey", [0, 0, 0, 80, 80, 80, 160, 160, 160, 255, 255, 255]),
    ):
        picture = PIL.Image.fromarray(indices, mode="P")
        picture.putpalette(palette + [0] * (768 - len(palette)))
        picture.save(tmp_path / f"{name}.png")
    with pytest.raises(InputError, match=r"colour\.png: palette-colour image"):
        read_image(tmp_path / "colour.png")
    grey = read_image(tmp_path / "grey.png")
    np.testing.assert_array_equal(np.unique(grey.array), [0, 80, 160, 255])


def test_a_png_promising_billions_of_pixels_is_refused_in_one_line(tmp_path):
    """A 14000 x 14000 PNG header (PIL's decompression-bomb guard) is one line naming the file."""
    path = tmp_path / "bomb.png"
    PIL.Image.new("1", (14000, 14000)).save(path)
    with pytest.raises(InputError, match=r"bomb\.png: refused: Image size \(196000000 pixels\)"):
        read_image(path)


def _seg_of(folder: Path, tmp_path: Path, *options: str) -> Path:
    """Segment DICOM `folder` with a 3D threshold model (CT domain forced) and return its one SEG."""
    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [1.0, 1.0, 1.0], [128, 128, 2])
    done = _medseg(
        "infer",
        str(folder),
        "-m",
        str(model),
        "-o",
        str(tmp_path / "out"),
        "--force-domain",
        *options,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [seg] = (tmp_path / "out").glob("*/seg.dcm")
    return seg


def test_the_seg_of_a_series_with_an_empty_character_set_is_written(datasets_dir, tmp_path):
    """The shared dcmqi CT says SpecificCharacterSet '' (common in PACS data): the SEG writer failed the
    whole study after its mask was written. The empty value now means the default repertoire."""
    series = datasets_dir / "dcmqi_ct3slice_seg" / "ct-3slice"
    assert pydicom.dcmread(next(series.iterdir())).SpecificCharacterSet == ""
    written = pydicom.dcmread(_seg_of(series, tmp_path, "--no-overlays"))
    assert written.FrameOfReferenceUID and written.Modality == "SEG"


def test_a_writer_that_leaves_a_truncated_file_publishes_nothing(tmp_path, monkeypatch, model):
    """On a full disk SimpleITK's NIfTI writer returns normally with a truncated file: the job fails with
    one line, no mask.nii.gz is published under its final name, and the batch records it (exit 3)."""
    import SimpleITK as sitk

    from medseg.cli.main import main

    real_write = sitk.WriteImage

    def full_disk(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        with open(path, "r+b") as handle:
            handle.truncate(40)

    monkeypatch.setattr(sitk, "WriteImage", full_disk)
    (tmp_path / "in").mkdir()
    write_radiograph(tmp_path / "in" / "dx.dcm", np.full((32, 32), 100, np.uint16))
    assert (
        main(["infer", str(tmp_path / "in"), "-m", str(model), "-o", str(tmp_path / "out"), "--force-domain"])
        == 3
    )
    [item] = json.loads((tmp_path / "out" / "summary.json").read_text())["items"]
    assert item["status"] == "failed" and "is the disk full?" in item["reason"]
    assert not list((tmp_path / "out").rglob("mask.nii.gz")) and not list((tmp_path / "out").rglob("*.tmp*"))


def _stacked_series(folder: Path, key: str, values: tuple[str, str]) -> list[np.ndarray]:
    """One series holding two volumes at the same positions that differ only by `key` (an echo pair, a
    GE 4D series with TriggerTime and no TemporalPositionIdentifier); returns the two volumes' arrays."""
    from dicom_factory import ct_image, edit, write_series

    arrays = []
    first = None
    for number, value in enumerate(values):
        image = ct_image(seed=number)
        paths = write_series(image, folder / f"volume_{number}")
        series = first or pydicom.dcmread(paths[0]).SeriesInstanceUID
        first = series

        def change(k, ds, value=value, series=series):
            ds.SeriesInstanceUID = series
            setattr(ds, key, value)
            ds.pop("TemporalPositionIdentifier", None)
            ds.pop("AcquisitionNumber", None)

        edit(paths, change)
        arrays.append(image.array)
    return arrays


@pytest.mark.parametrize(("key", "values"), [("EchoNumbers", ("1", "2")), ("TriggerTime", ("0", "250.5"))])
def test_a_series_stacking_volumes_says_what_it_is_and_one_can_be_chosen(key, values, tmp_path):
    from medseg.errors import GeometryError
    from medseg.io.dicom import read_series

    arrays = _stacked_series(tmp_path / "series", key, values)
    with pytest.raises(
        GeometryError, match=rf"stacks 2 volumes .* told apart by {key} \({values[0]}, {values[1]}\)"
    ):
        read_series(tmp_path / "series")
    chosen = read_series(tmp_path / "series", select={key: values[1]})
    np.testing.assert_array_equal(chosen.array, arrays[1])
    done = _medseg(
        "convert",
        str(tmp_path / "series"),
        str(tmp_path / "first.nii.gz"),
        "--select",
        f"{key}={values[0]}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_image(tmp_path / "first.nii.gz").array, arrays[0])


def test_errors_at_the_model_stage_name_the_file_not_dicom(tmp_path):
    """Errors raised while segmenting named the image by its reader ("dicom: the model is 3D...")."""
    from medseg.cli.main import main

    (tmp_path / "in").mkdir()
    path = write_radiograph(tmp_path / "in" / "dx.dcm", np.full((32, 32), 100, np.uint16))
    model = save_threshold_checkpoint(tmp_path / "m3d.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])
    argv = ["infer", str(tmp_path / "in"), "-m", str(model), "-o", str(tmp_path / "out"), "--force-domain"]
    assert main(argv) == 3
    [item] = json.loads((tmp_path / "out" / "summary.json").read_text())["items"]
    assert item["reason"].startswith(f"{path}: the model is 3D")


def test_an_nrrd_header_cannot_point_outside_its_folder(tmp_path):
    (tmp_path / "secret.raw").write_bytes(bytes(64))
    header = tmp_path / "inputs" / "volume.nhdr"
    header.parent.mkdir()
    fields = ["NRRD0004", "type: uchar", "dimension: 3", "sizes: 4 4 4", "encoding: raw"]
    header.write_text("\n".join([*fields, "data file: ../secret.raw"]) + "\n")
    with pytest.raises(InputError, match=r"volume\.nhdr: its data file '\.\./secret\.raw' lies outside"):
        read_image(header)


def test_the_seg_of_a_multi_frame_source_references_its_frames(datasets_dir, tmp_path):
    """An enhanced (multi-frame) CT made by highdicom from the dcmqi CT: its SEG is written, references
    the source's frames, and reads back onto the mask's voxels in physical space."""
    import highdicom

    slices = [pydicom.dcmread(path) for path in sorted((datasets_dir / "dcmqi_ct3slice_seg").rglob("*.dcm"))]
    slices = [ds for ds in slices if ds.Modality == "CT"]
    slices = slices[1:] + slices[:1]  # frames out of slice order: the SEG must follow the file's order
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(slices, highdicom.UID(), 1, highdicom.UID(), 1)
    folder = tmp_path / "enhanced"
    folder.mkdir()
    enhanced.save_as(folder / "ct.dcm")
    out = _seg_of(folder, tmp_path)
    seg = pydicom.dcmread(out)
    referenced = [
        int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        for item in seg.PerFrameFunctionalGroupsSequence
    ]
    assert sorted(referenced) == [1, 2, 3]
    mask, written = read_image(out.parent / "mask.nii.gz"), read_image(out)
    assert mask.array.any()
    assert_same_voxels_in_space(mask.array, mask.affine, written.array, written.affine)


def test_a_malformed_numeric_string_in_the_source_does_not_stop_its_seg(datasets_dir, tmp_path):
    """SliceThickness "2.5/0" (seen in PACS exports): the series is read from its positions, and its SEG
    is written with the distance between slices as thickness instead of failing the study."""
    folder = tmp_path / "ct"
    folder.mkdir()
    for number, path in enumerate(sorted((datasets_dir / "dcmqi_ct3slice_seg").rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if ds.Modality == "CT":
            ds["SliceThickness"]._value = "2.5/0"
            ds.save_as(folder / f"{number}.dcm", enforce_file_format=False)
    out = _seg_of(folder, tmp_path, "--no-overlays")
    assert (
        float(pydicom.dcmread(out).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness)
        == 1.0
    )
