"""Annotation readers: each dataset's official files -> ``list[VideoRecord]``.

Labels are class indices into a class list (a shipped label set from
``vidnets.data.load_labels`` or the dataset's own class file); paths are resolved against
the dataset root. :func:`check_files` drops (or rejects) records whose file is missing.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
CHARADES_CLASSES = 157
# Missing files named in the warning; the rest are counted.
_MISSING_SHOWN = 20


@dataclass
class VideoRecord:
    """One video of a dataset.

    ``label``: a class index, or a tuple of indices (multi-label). ``segments``:
    ``(class, start_s, end_s)`` action intervals (Charades localisation). ``frames_dir``:
    ``path`` is a folder of JPEG frames (Something-Something V1) holding ``num_frames``
    frames when known.
    """

    path: str
    label: int | tuple[int, ...]
    segments: tuple[tuple[int, float, float], ...] = ()
    frames_dir: bool = False
    num_frames: int | None = None


def normalise_class_name(name: str) -> str:
    """Lower case, quotes and apostrophes dropped, every other run of non-alphanumerics one
    space: ``passing_American_football_(in_game)`` and ``"passing American football (in
    game)"`` compare equal, as do ``massaging person's head`` and ``massaging_persons_head``."""
    return re.sub(r"[^a-z0-9]+", " ", re.sub(r"[\"'`\u2019]", "", name.lower())).strip()


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """``normalised name -> index`` for a class list."""
    return {normalise_class_name(name): i for i, name in enumerate(classes)}


def read_class_file(path: str | Path) -> tuple[str, ...]:
    """Class names, one per line; a leading index (``"1 ApplyEyeMakeup"``, UCF-101
    classInd.txt) is dropped, and lines are put in index order when indexed."""
    lines = [line.strip() for line in Path(path).read_text("utf-8").splitlines()]
    lines = [line for line in lines if line]
    indexed = [re.fullmatch(r"(\d+)[\s,;]+(.+)", line) for line in lines]
    if lines and all(indexed):
        return tuple(m.group(2).strip() for m in sorted(indexed, key=lambda m: int(m.group(1))))
    return tuple(lines)


def read_csv(
    annotation: str | Path, *, root: str | Path, classes: Sequence[str] | None = None
) -> list[VideoRecord]:
    """Generic ``path,label`` CSV (optional header; ``path label`` lines as PySlowFast's
    lists also work). A label is a class index, or a class name looked up in ``classes``;
    paths are relative to ``root``."""
    annotation, root = Path(annotation), Path(root)
    lookup = class_index(classes) if classes is not None else None
    records = []
    with annotation.open(newline="", encoding="utf-8") as file:
        for line_no, row in enumerate(csv.reader(file), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 1:  # PySlowFast lists: "path label"
                row = row[0].rsplit(maxsplit=1)
            if len(row) < 2:
                raise ValueError(f"{annotation}:{line_no}: expected 'path,label', got {row}")
            path, label = row[0].strip(), row[1].strip()
            if line_no == 1 and label.lower() == "label":
                continue  # header
            records.append(VideoRecord(str(root / path), _label(label, lookup, annotation,
                                                                 line_no)))
    return records


def _label(text: str, lookup: Mapping[str, int] | None, source: Path, line_no: int) -> int:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if lookup is None:
        raise ValueError(
            f"{source}:{line_no}: label {text!r} is a class name but no class list was given "
            "(pass labels=: a label-set name, a file with one class per line, or a list)"
        )
    key = normalise_class_name(text)
    if key not in lookup:
        raise ValueError(f"{source}:{line_no}: unknown class {text!r}")
    return lookup[key]


def folder_classes(root: str | Path) -> tuple[str, ...]:
    """Sorted names of the class folders under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))


def read_folder(root: str | Path, *, classes: Sequence[str] | None = None) -> list[VideoRecord]:
    """Folder per class: ``root/<class>/*.{mp4,avi,webm,mkv,mov}``; classes default to the
    sorted folder names."""
    root = Path(root)
    classes = folder_classes(root) if classes is None else classes
    records = []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: class folder not found")
        for video in sorted(folder.iterdir()):
            if video.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(VideoRecord(str(video), index))
    return records


def read_kinetics(
    annotation: str | Path, *, root: str | Path, classes: Sequence[str]
) -> list[VideoRecord]:
    """Official Kinetics-400/600 CSV (``label,youtube_id,time_start,time_end,split``).
    Video ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>`` directly under ``root``
    or under a ``<label>/`` folder (any spelling of the label); label names match
    ``classes`` up to case, quotes, underscores and punctuation."""
    annotation, root = Path(annotation), Path(root)
    lookup = class_index(classes)
    found = _index_videos(root)
    records = []
    with annotation.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{annotation}: missing columns {sorted(missing)}; expected "
                "label,youtube_id,time_start,time_end[,split]"
            )
        for line_no, row in enumerate(reader, start=2):
            stem = (f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_"
                    f"{int(float(row['time_end'])):06d}")
            path = found.get(stem, root / f"{stem}.mp4")
            records.append(VideoRecord(str(path), _label(row["label"], lookup, annotation,
                                                         line_no)))
    return records


def _index_videos(root: Path) -> dict[str, Path]:
    """``file stem -> path`` of the videos in ``root`` and its direct sub-folders."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        candidates = entry.iterdir() if entry.is_dir() else (entry,)
        for path in candidates:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                found.setdefault(path.stem, path)
    return found


def ssv2_classes(labels_json: str | Path) -> tuple[str, ...]:
    """Class names of ``something-something-v2-labels.json`` (``{name: "index"}``)."""
    mapping = json.loads(Path(labels_json).read_text("utf-8"))
    names = sorted(mapping, key=lambda name: int(mapping[name]))
    if [int(mapping[n]) for n in names] != list(range(len(names))):
        raise ValueError(f"{labels_json}: class indices are not 0..{len(names) - 1}")
    return tuple(names)


def read_ssv2(
    annotation: str | Path, *, root: str | Path, classes: Sequence[str]
) -> list[VideoRecord]:
    """Something-Something V2 train/validation JSON (``[{id, label, template,
    placeholders}]``): the class is the template without brackets, the video
    ``root/{id}.webm``."""
    annotation, root = Path(annotation), Path(root)
    lookup = {name: i for i, name in enumerate(classes)}
    records = []
    for entry in json.loads(annotation.read_text("utf-8")):
        if "template" not in entry:
            raise ValueError(f"{annotation}: entry {entry.get('id')!r} has no template "
                             "(test lists carry no labels)")
        name = entry["template"].replace("[", "").replace("]", "")
        if name not in lookup:
            raise ValueError(f"{annotation}: entry {entry['id']!r}: unknown class {name!r}")
        records.append(VideoRecord(str(root / f"{entry['id']}.webm"), lookup[name]))
    return records


def read_ssv1(
    annotation: str | Path, *, root: str | Path, classes: Sequence[str]
) -> list[VideoRecord]:
    """Something-Something V1 CSV (``id;label`` lines, label a class name) with JPEG
    frame folders ``root/{id}/00001.jpg ...``."""
    annotation, root = Path(annotation), Path(root)
    lookup = class_index(classes)
    records = []
    for line_no, line in enumerate(annotation.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        video_id, sep, label = line.partition(";")
        if not sep:
            raise ValueError(f"{annotation}:{line_no}: expected 'id;label', got {line!r}")
        records.append(VideoRecord(str(root / video_id.strip()),
                                   _label(label.strip(), lookup, annotation, line_no),
                                   frames_dir=True))
    return records


def charades_classes(classes_file: str | Path | None = None) -> tuple[str, ...]:
    """Charades class names from ``Charades_v1_classes.txt`` (``c000 Holding some
    clothes``), or the codes ``c000 .. c156``."""
    if classes_file is None:
        return tuple(f"c{i:03d}" for i in range(CHARADES_CLASSES))
    names = []
    for line in Path(classes_file).read_text("utf-8").splitlines():
        code, _, name = line.strip().partition(" ")
        if code:
            if code != f"c{len(names):03d}":
                raise ValueError(f"{classes_file}: expected class c{len(names):03d}, got {code}")
            names.append(name.strip() or code)
    return tuple(names)


def read_charades(annotation: str | Path, *, root: str | Path) -> list[VideoRecord]:
    """Charades CSV (``id, ..., actions``, actions ``"c092 11.90 21.20;c147 0.00 12.60"``):
    multi-label records with the action segments kept; video ``root/{id}.mp4``."""
    annotation, root = Path(annotation), Path(root)
    records = []
    with annotation.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not {"id", "actions"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{annotation}: expected columns id and actions, got "
                             f"{reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            segments = tuple(_charades_segment(item, annotation, line_no)
                             for item in (row["actions"] or "").split(";") if item.strip())
            label = tuple(sorted({segment[0] for segment in segments}))
            records.append(VideoRecord(str(root / f"{row['id']}.mp4"), label, segments))
    return records


def _charades_segment(item: str, source: Path, line_no: int) -> tuple[int, float, float]:
    match = re.fullmatch(r"c(\d{3})\s+([\d.]+)\s+([\d.]+)", item.strip())
    if not match or int(match.group(1)) >= CHARADES_CLASSES:
        raise ValueError(f"{source}:{line_no}: bad action {item!r}; expected 'cNNN start end'")
    return int(match.group(1)), float(match.group(2)), float(match.group(3))


def read_hmdb51(
    split_dir: str | Path,
    *,
    root: str | Path,
    classes: Sequence[str],
    split: int = 1,
    train: bool = True,
) -> list[VideoRecord]:
    """HMDB-51 official splits: ``<class>_test_split<k>.txt`` lines ``video.avi 0|1|2``
    (1 = train, 2 = test); video under ``root/<class>/`` or directly under ``root``."""
    split_dir, root = Path(split_dir), Path(root)
    wanted = "1" if train else "2"
    records = []
    for index, name in enumerate(classes):
        split_file = split_dir / f"{name}_test_split{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file}: HMDB-51 split file not found")
        for line in split_file.read_text("utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == wanted:
                records.append(VideoRecord(str(_in_class_folder(root, name, parts[0])), index))
    return records


def _in_class_folder(root: Path, class_name: str, file_name: str) -> Path:
    nested = root / class_name / file_name
    flat = root / file_name
    return flat if not nested.exists() and flat.exists() else nested


def read_ucf101(
    split_dir: str | Path,
    *,
    root: str | Path,
    classes: Sequence[str],
    split: int = 1,
    train: bool = True,
) -> list[VideoRecord]:
    """UCF-101 official splits: ``trainlist0k.txt`` (``Class/v_x.avi 1``) or
    ``testlist0k.txt`` (``Class/v_x.avi``); the class is the folder, looked up in
    ``classes`` (classInd.txt order)."""
    split_dir, root = Path(split_dir), Path(root)
    split_file = split_dir / f"{'trainlist' if train else 'testlist'}{split:02d}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: UCF-101 split file not found")
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    records = []
    for line_no, line in enumerate(split_file.read_text("utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        class_name = parts[0].replace("\\", "/").split("/")[0]
        if class_name.lower() not in lookup:
            raise ValueError(f"{split_file}:{line_no}: unknown class {class_name!r}")
        records.append(VideoRecord(str(root / parts[0]), lookup[class_name.lower()]))
    return records


def check_files(records: Iterable[VideoRecord], *, strict: bool = False) -> list[VideoRecord]:
    """The records whose video file (or frame folder) exists. Missing ones are named in
    one warning (first 20 and a count) and dropped, or raise ``FileNotFoundError`` when
    ``strict``."""
    present, missing = [], []
    for record in records:
        exists = Path(record.path).is_dir() if record.frames_dir else Path(record.path).is_file()
        (present if exists else missing).append(record)
    if missing:
        names = ", ".join(r.path for r in missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        message = f"{len(missing)} video(s) listed in the annotation are missing: {names}{more}"
        if strict:
            raise FileNotFoundError(message)
        warnings.warn(f"{message}; dropped", stacklevel=2)
    return present
