"""Verify any synthmed folder: its marker, and what opening it checks (the API behind
`synthmed verify`). Nested synthmed folders (a demo's dataset, an audit's filtered cohort) are
verified too."""

from __future__ import annotations

from pathlib import Path

from synthmed.errors import InputError
from synthmed.io import folders


def _open_checks(root: Path, kind: str) -> list[str]:
    """What a reader of this kind checks beyond the marker; a line of what it holds."""
    if kind == "dataset":
        from synthmed.data.dataset import Dataset

        ds = Dataset.open(root)
        return [f"dataset: {len(ds)} images of {ds.shape}, {len(ds.patients())} patients, "
                f"manifest consistent; dataset fingerprint {ds.fingerprint()}"]
    if kind == "cohort":
        from synthmed.data.cohort import Cohort

        co = Cohort.open(root)
        return [f"cohort: {len(co)} images of {co.shape}, values in range"]
    if kind == "bundle":
        import json

        from synthmed.generate.documents import check_sha256sums

        problems = check_sha256sums(root)
        if problems:
            raise InputError(f"{root}: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        rec = json.loads((root / "release.json").read_text(encoding="utf-8"))
        how = " under an override" if rec.get("override") else ""
        return [f"bundle: every file matches SHA256SUMS; released at the '{rec.get('tier')}' tier"
                f"{how}, audit verdict {rec.get('audit', {}).get('verdict')}"]
    if kind == "run" and (root / "model.json").is_file():
        from synthmed.models import load

        model = load(root, device="cpu")
        return [f"run: model sha256 {model.model_hash}, trained on dataset "
                f"{model.info.get('dataset_fingerprint')}"]
    return []


def verify_folder(path: str | Path) -> list[str]:
    """Lines saying what `path` is; InputError (one line) when it or a folder in it fails."""
    root = Path(path)
    info = folders.verify(root)
    lines = folders.describe(info) + _open_checks(root, info.kind)
    nested = sorted({Path(rel).parent for rel in info.files
                     if Path(rel).name == folders.MARKER})
    for sub in nested:
        try:
            sub_info = folders.verify(root / sub)
            extra = _open_checks(root / sub, sub_info.kind)
        except InputError as err:
            raise InputError(f"{root}: holds {sub}, which does not verify: {err}") from None
        lines.append(f"  {sub}: synthmed {sub_info.kind}, fingerprint {sub_info.fingerprint}"
                     + (f"; {extra[0]}" if extra else ""))
    return lines
