"""The release scan: identifiers of the real data in any byte of a bundle, found wherever they
hide (DICOM headers, compressed NIfTI headers, PNG text chunks, JSON), named by kind only.

Real fixtures: the two identifying MR series (names, birth dates, accession numbers, device
serials in their headers) and the NIH sample (patient IDs and file stems), when ../shared/data
is there; skipped cleanly otherwise.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from synthmed.release.identifiers import Identifiers, collect_identifiers
from synthmed.release.scan import equal_to_real, scan_folder

from conftest import shared_path

KEY = bytes(range(100, 132))


def _synthetic_bundle(root: Path, spatial_dims: int, n: int = 3) -> Path:
    """Synthetic studies written by the cohort writers in every format, plus a manifest."""
    from synthmed.generate.manifest import write_manifest
    from synthmed.generate.study import CohortContext, SyntheticStudy, VirtualPatient
    from synthmed.generate.writers import write_study

    shape = (8, 16, 16) if spatial_dims == 3 else (32, 32)
    ctx = CohortContext(cohort_seed=7, model_hash="ab" * 32, synthmed_version="test",
                        spatial_dims=spatial_dims, modality="MR" if spatial_dims == 3 else "DX",
                        sampling={"sampler": "ddim", "steps": 3, "guidance_scale": 1.0},
                        spacing=(1.0,) * spatial_dims)
    rng = np.random.default_rng(0)
    rows = []
    formats = ["dicom", "nifti", "png"] if spatial_dims == 3 else ["dicom", "png"]
    for i in range(n):
        p = VirtualPatient(index=i, patient_id=f"SYN-{i:06d}", sex="F", age=50.0, seed=i)
        s = SyntheticStudy(patient=p, study_index=0, days_since_first=0, labels=(), age=50.0,
                           image=rng.random(shape, dtype=np.float32), seed=i)
        rows += write_study(s, ctx, root, formats)
    write_manifest(rows, root)
    return root


def _kinds(hits) -> set[str]:
    return {h.kind for h in hits}


# ------------------------------------------------------------------------------ unit cases
def test_each_kind_is_found_in_each_hiding_place_and_never_echoed(tmp_path):
    ids = Identifiers()
    ids.add("dataset pseudonym", "P-0123456789ab")
    ids.add("source UID", "1.3.12.2.1107.5.2.32.35162.2013030810391143211")
    ids.add_date("source date", "19660101")
    from synthmed.release.identifiers import add_key

    add_key(ids, KEY)
    root = _synthetic_bundle(tmp_path / "b", 3)
    hits, stats = scan_folder(root, ids)
    assert hits == [] and stats["files"] > 10
    # a UID in a DICOM header element
    dcm = sorted((root / "dicom").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(dcm)
    ds.StudyDescription = "1.3.12.2.1107.5.2.32.35162.2013030810391143211"
    ds.save_as(dcm)
    # a date in the header of a gzip-compressed NIfTI (invisible to a plain byte search)
    import nibabel as nib

    nii = sorted((root / "nifti").rglob("*.nii.gz"))[0]
    img = nib.load(str(nii))
    img.header["descrip"] = b"acquired 19660101"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), str(nii))
    assert b"19660101" not in nii.read_bytes() and b"19660101" in gzip.decompress(nii.read_bytes())
    # a pseudonym in a compressed PNG text chunk
    from PIL import Image, PngImagePlugin

    png = sorted((root / "png").rglob("*.png"))[0]
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "patient P-0123456789AB", zip=True)
    with Image.open(png) as im:
        im.save(png, pnginfo=info)
    assert b"P-0123456789" not in png.read_bytes().upper()
    # the key, as hex, in a JSON file
    (root / "notes.json").write_text(json.dumps({"k": KEY.hex()}))
    hits, _ = scan_folder(root, ids)
    where = {h.kind: h.where for h in hits}
    assert _kinds(hits) == {"source UID", "source date", "dataset pseudonym", "key bytes"}
    assert where["source UID"].startswith("dicom/") and "nifti/" in where["source date"]
    assert "(iTXt chunk)" in where["dataset pseudonym"] and where["key bytes"] == "notes.json"
    text = "\n".join(h.line() for h in hits)
    for secret in ("1.3.12.2.1107", "19660101", "0123456789", KEY.hex()[:16]):
        assert secret not in text.lower()


def test_short_numbers_must_stand_alone(tmp_path):
    ids = Identifiers()
    ids.add_date("source date", "20140425")
    ids.add("source ID", "00000013")
    (tmp_path / "a.json").write_text('{"uid": "2.25.1201404250000000139", "n": 100000013}')
    assert scan_folder(tmp_path, ids)[0] == []
    (tmp_path / "b.csv").write_text("x,00000013\n")
    (tmp_path / "c.txt").write_text("date 2014-04-25\n")
    hits, _ = scan_folder(tmp_path, ids)
    assert sorted((h.where, h.kind) for h in hits) == [("b.csv", "source ID"), ("c.txt", "source date")]


def test_a_file_name_is_scanned_too(tmp_path):
    ids = Identifiers()
    ids.add("source ID", "00000013_005")
    (tmp_path / "00000013_005.png").write_bytes(b"x")
    hits, _ = scan_folder(tmp_path, ids)
    assert any(h.where.startswith("the name ") for h in hits)


def test_equal_images_are_found_at_the_written_precision():
    rng = np.random.default_rng(0)
    real = rng.random((5, 8, 8)).astype(np.float32)
    syn = rng.random((4, 8, 8)).astype(np.float32)
    syn[1] = real[0]  # an exact copy
    syn[2] = (np.round(real[3] * 65535) / 65535).astype(np.float32)  # a copy as a 16-bit file holds it
    syn[3] = real[1] + 1e-3  # close, but not equal once written
    assert equal_to_real(syn, real) == [1, 2]


# ------------------------------------------------------------------------- real fixtures
@pytest.mark.slow
def test_mr_series_identifiers_never_reach_a_bundle(tmp_path):
    """Every UID, date, name and ID of the two identifying MR series, and the pseudonyms of the
    dataset ingested from them, searched in a bundle of synthetic MR studies; then the same
    bundle carrying the dataset's own manifest is refused."""
    from synthmed.config import load_config
    from synthmed.data.dataset import Dataset
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig

    root = Path(__file__).resolve().parents[1]
    sources = [shared_path("dicom", "mr-brain-sagittal"), shared_path("dicom", "mr-fmri-series")]
    key = tmp_path / "deid.key"
    key.write_bytes(KEY)
    cfg = load_config(root / "configs" / "ingest-ct.yaml", IngestConfig)
    ingest(sources, tmp_path / "ds", cfg, key_path=key, workers=1)
    ds = Dataset.open(tmp_path / "ds")
    ids = collect_identifiers(ds, sources, KEY)
    c = ids.counts()
    # the oracle holds what must not leak (else a clean scan would prove nothing)
    assert c["source UID"] > 800 and c["source date"] >= 16 and c["dataset pseudonym"] >= 3, c
    assert "19660101" in ids.values["source date"] and c.get("source ID", 0) >= 3
    bundle = _synthetic_bundle(tmp_path / "bundle", 3)
    hits, stats = scan_folder(bundle, ids)
    assert hits == [], [h.line() for h in hits]
    shutil.copyfile(tmp_path / "ds" / "manifest.csv", bundle / "source-manifest.csv")
    hits, _ = scan_folder(bundle, ids)
    assert {(h.where, h.kind) for h in hits} == {("source-manifest.csv", "dataset pseudonym")}


def test_short_values_in_pixel_data_compressed_streams_and_digests_are_not_findings(tmp_path):
    """A 5-digit study ID matches random bytes by chance (a full demo bundle was refused for one
    inside a .nii.gz's deflate stream): inside pixel data, compressed payloads and hex digests
    short values are not findings, while the same value in a header or text still is."""
    import nibabel as nib
    from PIL import Image, PngImagePlugin

    short, name = "42262", "Qxzvw"
    ids = Identifiers()
    ids.add("source ID", short)
    ids.add("source name", name)
    root = _synthetic_bundle(tmp_path / "b", 3)
    dcm = sorted((root / "dicom").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(dcm)
    px = bytearray(ds.PixelData)
    px[100:107] = b"\x01" + short.encode() + b"\x01"
    ds.PixelData = bytes(px)
    ds.save_as(dcm)
    nii = sorted((root / "nifti").rglob("*.nii.gz"))[0]
    img = nib.load(str(nii))
    vox = np.frombuffer(bytearray(np.asarray(img.dataobj, dtype=np.float32).tobytes()), np.float32).copy()
    raw = bytearray(vox.tobytes())
    raw[40:47] = b"\x01" + short.encode() + b"\x01"
    vox = np.frombuffer(bytes(raw), np.float32).reshape(img.shape)
    nib.save(nib.Nifti1Image(vox, img.affine, img.header), str(nii))
    np.save(root / "images.npy", np.frombuffer(b"\x01" + short.encode() + b"\x01\x01\x01", np.uint8))
    png = sorted((root / "png").rglob("*.png"))[0]
    row = np.frombuffer((b"\x01" + short.encode() + b"\x01" * 26), np.uint8)
    Image.fromarray(np.tile(row, (32, 1))).save(png)
    # a gzip payload with the 5-letter name in it by chance: random voxels, written until the
    # compressed stream (and only it) holds a letter run we then call a name
    rng = np.random.default_rng(0)
    chance = root / "nifti" / "chance.nii.gz"
    for _ in range(50):
        nib.save(nib.Nifti1Image(rng.random((16, 16, 8), dtype=np.float32), np.eye(4)), str(chance))
        data = chance.read_bytes()
        runs = [m for m in __import__("re").finditer(rb"(?<![A-Za-z])[A-Za-z]{5}(?![A-Za-z])", data[40:-8])
                if m.group().lower() not in gzip.decompress(data).lower()]
        if runs:
            name = runs[0].group().decode()
            ids.add("source name", name)
            break
    assert runs, "no chance letter run in 50 compressed volumes"
    (root / "digests.txt").write_text(f"sha256 9f3ab{short}cd17e0\n")
    hits, _ = scan_folder(root, ids)
    assert hits == [], hits
    # the same values where a writer would put text are found
    ds = pydicom.dcmread(dcm)
    ds.StudyID = short
    ds.save_as(dcm)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"by {name}")
    with Image.open(png) as im:
        im.save(png, pnginfo=info)
    img = nib.load(str(nii))
    img.header["descrip"] = f"study {short}".encode()
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), str(nii))
    found = {(h.where.split("/")[0], h.kind) for h in scan_folder(root, ids)[0]}
    assert {("dicom", "source ID"), ("nifti", "source ID"), ("png", "source name")} <= found, found
