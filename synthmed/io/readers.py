"""Readers behind one interface, found through a registry (in the manner of MONAI's ImageReader).

A reader says which files it claims (by suffix) and turns one `ReadTask` (a file, or for DICOM a
series of files) into `LoadedImage`s whose identifiers are already pseudonymised; a file that
cannot or must not be used raises `RefusedInput`. Ingestion never switches on a format name:
it asks `reader_for(path)` and calls `read`.

DICOM is the fallback claimant: DICOM files often have no suffix or an arbitrary one
('IM_0001', 'CT.1.2.840.5'), so every file whose suffix no other reader claims and that is not a
document or table (`SKIP_SUFFIXES`) is a DICOM candidate, and the DICOM scan checks content.
DICOM also groups files into series before reading (`groups_files`); see `DicomReader.scan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from synthmed.io import nifti, npz, raster
from synthmed.io.types import BrokenFile, LoadedImage, RefusedInput

if TYPE_CHECKING:
    from synthmed.data.ingest_config import IngestConfig
    from synthmed.data.metadata import MetadataRow
    from synthmed.io.dicom import DicomScan, HeaderCache

# Documents, tables, archives and formats no reader handles: skipped (and accounted for) rather
# than offered to the DICOM fallback.
SKIP_SUFFIXES = frozenset((
    ".csv", ".tsv", ".json", ".txt", ".md", ".rst", ".yaml", ".yml", ".xml", ".html", ".htm",
    ".pdf", ".log", ".py", ".sh", ".bat", ".ini", ".cfg", ".toml", ".key", ".zip", ".tar", ".gz",
    ".tgz", ".7z", ".xlsx", ".xls", ".doc", ".docx", ".rtf", ".odt", ".mat", ".h5", ".hdf5",
    ".npy", ".pkl", ".pickle", ".pt", ".pth", ".safetensors", ".db", ".sqlite", ".bak", ".tmp",
    ".exe", ".dll", ".so", ".js", ".css", ".ipynb", ".gif", ".svg", ".mp4", ".avi", ".mov",
    ".nrrd", ".mha", ".mhd", ".raw", ".img", ".hdr", ".sav", ".dat",
))


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


@dataclass(frozen=True)
class ReadTask:
    """One unit of work for a reader: a file, or (DICOM) a series of files."""

    reader: str                    # registry name
    path: Path                     # the file, or the first file of a series (for messages)
    order: tuple                   # sort key: (source index, relative path)
    meta: "MetadataRow | None" = None
    raw_patient: str | None = None
    series: Any = None             # DicomSeries for the DICOM reader
    files: tuple[Path, ...] = ()   # every input file the task reads (default: `path`)
    patient_rule: str = ""         # which patient_from rule gave the patient (for the report)

    @property
    def members(self) -> tuple[Path, ...]:
        return self.files or (self.path,)

    @property
    def n_files(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class ReadOptions:
    """What readers need besides the task: the ingest config and state shared by a whole run
    (the DICOM scan's header cache), handed to worker processes by the pool initializer."""

    config: "IngestConfig"
    dicom_headers: "HeaderCache | None" = None


class Reader:
    """Base class: `name`, the `suffixes` it claims, and `read`."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    groups_files: ClassVar[bool] = False  # True: files are grouped into tasks by `scan`

    def claims(self, path: Path) -> bool:
        return suffix_of(path) in self.suffixes

    def stem(self, path: Path) -> str:
        """The file name without the reader's suffix (for `filename_patient_pattern`)."""
        return path.stem

    def read(self, task: ReadTask, deid, options: ReadOptions) -> list[LoadedImage]:
        raise NotImplementedError

    def read_parts(self, task: ReadTask, deid,
                   options: ReadOptions) -> tuple[list[LoadedImage], list[RefusedInput]]:
        """The images, plus member files refused on their own while the rest of the task was
        kept (a series read as 2D slices without its broken slice). Raises RefusedInput when
        nothing of the task can be used."""
        return self.read(task, deid, options), []


READERS: dict[str, Reader] = {}
FALLBACK_READER = "dicom"


_KNOWN: list[frozenset[str]] = []  # known_suffixes(), computed once per registry state


def register_reader(cls: type[Reader]) -> type[Reader]:
    """Class decorator: make a reader findable by `reader_for` and `get_reader`."""
    READERS[cls.name] = cls()
    _KNOWN.clear()
    return cls


def get_reader(name: str) -> Reader:
    return READERS[name]


def reader_for(path: Path) -> str | None:
    """The name of the reader that claims `path`; None for a file to skip (a document, table,
    archive); the DICOM reader for every other file."""
    if suffix_of(path) in SKIP_SUFFIXES:
        return None
    for name, reader in READERS.items():
        if name != FALLBACK_READER and reader.claims(path):
            return name
    return FALLBACK_READER


def known_suffixes() -> frozenset[str]:
    """Suffixes that are safe to show in a report (a known file type, not a possible name)."""
    if not _KNOWN:
        _KNOWN.append(frozenset(s for r in READERS.values() for s in r.suffixes) | SKIP_SUFFIXES)
    return _KNOWN[0]


@register_reader
class NiftiReader(Reader):
    name = "nifti"
    suffixes = nifti.SUFFIXES

    def stem(self, path: Path) -> str:
        return nifti.nifti_stem(path)

    def read(self, task: ReadTask, deid, options: ReadOptions) -> list[LoadedImage]:
        return [nifti.load_nifti(task.path, deid, raw_patient=task.raw_patient,
                                 modality=options.config.nifti_modality)]


@register_reader
class RasterReader(Reader):
    name = "raster"
    suffixes = raster.SUFFIXES

    def read(self, task: ReadTask, deid, options: ReadOptions) -> list[LoadedImage]:
        return [raster.load_raster(task.path, deid, raw_patient=task.raw_patient,
                                   modality=options.config.raster_modality)]


@register_reader
class NpzReader(Reader):
    name = "npz"
    suffixes = npz.SUFFIXES

    def read(self, task: ReadTask, deid, options: ReadOptions) -> list[LoadedImage]:
        return npz.load_npz(task.path, deid, raw_prefix=task.raw_patient,
                            modality=options.config.raster_modality)


@register_reader
class DicomReader(Reader):
    name = "dicom"
    suffixes = (".dcm", ".dicom", ".ima")
    groups_files = True

    def scan(self, paths: list[Path]) -> "DicomScan":
        # Through the package attribute, so that a caller (benchmarks/bench_ingest.py) that
        # wraps it for timing sees the call.
        from synthmed.io import dicom

        return dicom.find_dicom_series(paths)

    def read(self, task: ReadTask, deid, options: ReadOptions) -> list[LoadedImage]:
        from synthmed.io import dicom

        deid_cfg = options.config.deid
        allowed = frozenset(deid_cfg.allowed_modalities) if deid_cfg.allowed_modalities else None
        return dicom.load_series(task.series, deid, allow_burned_in=deid_cfg.allow_burned_in,
                                 allowed_modalities=allowed, headers=options.dicom_headers,
                                 allow_gaps=options.config.spatial_dims == 2)

    def read_parts(self, task: ReadTask, deid,
                   options: ReadOptions) -> tuple[list[LoadedImage], list[RefusedInput]]:
        """A series that loses a slice (a cut-off or corrupt file) is refused as incomplete,
        naming the broken file, because a volume with a hole is not the anatomy it claims to
        be; with `spatial_dims: 2` the other slices are kept and the broken one is refused."""
        import dataclasses

        series = task.series
        files = list(series.files)
        dropped: list[RefusedInput] = []
        while True:
            try:
                part = task if not dropped else dataclasses.replace(
                    task, series=dataclasses.replace(series, files=list(files)))
                return self.read(part, deid, options), dropped
            except BrokenFile as err:
                bad = Path(err.path)
                if len(series.files) == 1 or bad not in files:
                    raise
                if options.config.spatial_dims != 2:
                    raise RefusedInput(bad, f"series incomplete: slice {bad} is unusable "
                                            f"({err.reason}); a 3D volume needs every slice of "
                                            f"its series ({len(series.files)} files)") from None
                dropped.append(err)
                files.remove(bad)
                if not files:
                    raise RefusedInput(bad, f"every file of the series is unusable ({err.reason})") from None
