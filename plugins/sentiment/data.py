"""Reading labelled text: the built-in synthetic sample, CSV/TSV files, class folders of .txt, TFDS.

Every reader returns plain Python lists ``(texts, labels)`` per split; the task turns them into ``tf.data``.
Labels stay strings here; :func:`class_names_for` orders them and maps 0/1 to negative/positive.
"""

from __future__ import annotations

import csv
import itertools
import random
import sys
from pathlib import Path

from suite.errors import DataSourceError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "comment", "body", "document", "tweet")
LABEL_COLUMNS = ("label", "sentiment", "class", "target", "polarity", "rating", "category")
SPLIT_FILES = {"train": ("train",), "val": ("dev", "val", "valid", "validation"), "test": ("test",)}
TABLE_SUFFIXES = (".csv", ".tsv")
SKIP_FOLDERS = ("unsup",)  # aclImdb's unlabelled reviews


# ---- the built-in sample --------------------------------------------------------------------------------
# Common review words, so that what a newcomer types first ("I loved it", "not good at all") is in the sample's
# vocabulary: the app's first prediction comes from a model trained on this.
_POS = ["wonderful", "great", "brilliant", "moving", "delightful", "charming", "superb", "funny", "beautiful",
        "excellent", "gripping", "touching", "clever", "lovely", "fantastic", "good", "warm", "enjoyable",
        "entertaining", "fun", "hilarious", "powerful", "stunning", "memorable", "smart", "perfect", "amazing",
        "sweet", "engaging", "fresh"]
_NEG = ["terrible", "awful", "boring", "dull", "painful", "tedious", "bad", "weak", "clumsy", "lifeless",
        "predictable", "annoying", "stupid", "bland", "horrible", "poor", "dreadful", "mediocre", "slow", "messy",
        "forgettable", "silly", "unfunny", "ugly", "flat", "pointless", "lazy", "disappointing", "confusing",
        "shallow"]
_POS_VERBS = ["loved", "enjoyed", "adored", "liked", "recommend"]
_NEG_VERBS = ["hated", "disliked", "regretted", "endured", "resented"]
_NOUNS = ["film", "movie", "story", "script", "performance", "cast", "ending", "soundtrack", "direction", "plot",
          "acting", "dialogue", "sequel", "comedy", "drama"]
_ADVERBS = ["", "really ", "truly ", "quite ", "very ", "simply "]
# (template, polarity): +1 keeps the words' sentiment, -1 negates it (the negation sits right before the
# adjective, so word pairs can learn it from a few hundred sentences). {adj}, {adj2}, {verb} share one polarity.
_TEMPLATES = [
    ("The {noun} is {adv}{adj}.", 1),
    ("A {adv}{adj} {noun}.", 1),
    ("What a {adj} {noun}!", 1),
    ("I found the {noun} {adv}{adj}.", 1),
    ("Honestly, the {noun} was {adv}{adj} from start to finish.", 1),
    ("A {adj}, {adj2} {noun}. I {verb} it!", 1),
    ("The {noun} is {adj} and the {noun2} is {adv}{adj2}.", 1),
    ("I {verb} this {noun}.", 1),
    ("{Adj} and {adj2}.", 1),
    ("The {noun} is not {adj}.", -1),
    ("The {noun} isn't {adj} at all.", -1),
    ("This {noun} is not {adj} at all.", -1),
    ("I found the {noun} not {adj}.", -1),
    ("The {noun} was never {adj}.", -1),
]


def sample_texts(n: int = 1200, seed: int = 0) -> tuple[list[str], list[str]]:
    """A deterministic synthetic movie-review sample: templates x words, with negation flipping the label.

    No well-kept installed package ships labelled sentiment sentences offline (scikit-learn, NLTK and TFDS
    all download theirs), so the project generates this one; the app marks it as synthetic.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[str] = []
    while len(texts) < n:
        # one sentence in five is negated: the adjective stays the main signal, "not great" a learnable twist
        negated = rng.random() < 0.2
        template, polarity = rng.choice([t for t in _TEMPLATES if (t[1] < 0) == negated])
        positive = rng.random() < 0.5
        adj, adj2 = rng.sample(_POS if positive else _NEG, 2)
        noun, noun2 = rng.sample(_NOUNS, 2)
        text = template.format(noun=noun, noun2=noun2, adv=rng.choice(_ADVERBS), adj=adj, adj2=adj2,
                               Adj=adj.capitalize(), verb=rng.choice(_POS_VERBS if positive else _NEG_VERBS))
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append("positive" if positive == (polarity > 0) else "negative")
    return texts, labels


# ---- tables ------------------------------------------------------------------------------------------------
def _pick(columns: list[str], wanted: str, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if wanted:
        if wanted not in columns:
            raise DataSourceError(f"{path}: no {what} column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    lower = {c.strip().lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise DataSourceError(
        f"{path}: cannot find the {what} column (looked for {', '.join(candidates)}; columns: "
        f"{', '.join(columns)}); set {what}_column"
    )


def read_table(path: Path, text_column: str = "", label_column: str = "") -> tuple[list[str], list[str]]:
    """Read a CSV/TSV file with a header; the text and label columns are found by name unless given."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    tsv = path.suffix.lower() == ".tsv"
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            if tsv:
                reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                head = fh.read(8192)
                fh.seek(0)
                try:
                    dialect = csv.Sniffer().sniff(head, delimiters=",;\t|")
                except csv.Error:
                    dialect = csv.excel
                reader = csv.reader(fh, dialect)
            header = next(reader, None)
            if not header:
                raise DataSourceError(f"{path} is empty")
            header = [h.strip() for h in header]
            ti = header.index(_pick(header, text_column, TEXT_COLUMNS, "text", path))
            li = header.index(_pick(header, label_column, LABEL_COLUMNS, "label", path))
            texts, labels = [], []
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(ti, li):
                    raise DataSourceError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
                text, label = row[ti].strip(), row[li].strip()
                if not label:
                    raise DataSourceError(f"{path}:{lineno}: empty label")
                if text:
                    texts.append(text)
                    labels.append(label)
    except OSError as err:
        raise DataSourceError(f"cannot read {path}: {err.strerror}") from None
    if not texts:
        raise DataSourceError(f"{path} has no labelled rows")
    return texts, labels


def _split_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name, suffix in itertools.product(names, TABLE_SUFFIXES):
        for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


# ---- class folders -------------------------------------------------------------------------------------------
def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name not in SKIP_FOLDERS and not p.name.startswith(".")
                  and any(p.glob("*.txt")))


def read_class_folders(folder: Path) -> tuple[list[str], list[str]]:
    """``folder/<class>/*.txt``: one example per file, the folder's name is its label."""
    texts, labels = [], []
    for cls in _class_folders(folder):
        for file in sorted(cls.glob("*.txt")):
            text = file.read_bytes().decode("utf-8", "replace").strip()
            if text:
                texts.append(text)
                labels.append(cls.name)
    return texts, labels


def read_path(path: Path, text_column: str = "", label_column: str = "") -> dict[str, tuple[list, list] | None]:
    """Splits found at ``path``: {"train": (texts, labels), "val": ... or None, "test": ... or None}.

    - a CSV/TSV file: one table, split later;
    - a folder with ``train.tsv``/``dev.tsv``/``test.tsv`` (or ``.csv``; ``val``/``validation`` too): GLUE style;
    - a folder with ``train/`` and ``test/`` sub-folders of class folders: aclImdb style;
    - a folder of class folders (``pos/``, ``neg/``, or any names) of ``.txt`` files.
    """
    if path.is_file():
        if path.suffix.lower() not in (*TABLE_SUFFIXES, ".txt"):
            raise DataSourceError(f"{path}: expected a .csv or .tsv file, or a folder")
        return {"train": read_table(path, text_column, label_column), "val": None, "test": None}
    if not path.is_dir():
        raise DataSourceError(f"{path} is neither a file nor a folder")
    train_file = _split_file(path, SPLIT_FILES["train"])
    if train_file is not None:
        out: dict[str, tuple[list, list] | None] = {"train": read_table(train_file, text_column, label_column)}
        for split in ("val", "test"):
            file = _split_file(path, SPLIT_FILES[split])
            out[split] = read_table(file, text_column, label_column) if file else None
        return out
    sub = {name: path / name for name in ("train", "val", "valid", "validation", "dev", "test")}
    if sub["train"].is_dir() and _class_folders(sub["train"]):
        out = {"train": read_class_folders(sub["train"]), "val": None, "test": None}
        for key, names in (("val", ("val", "valid", "validation", "dev")), ("test", ("test",))):
            for name in names:
                if sub[name].is_dir() and _class_folders(sub[name]):
                    out[key] = read_class_folders(sub[name])
                    break
        return out
    if _class_folders(path):
        return {"train": read_class_folders(path), "val": None, "test": None}
    raise DataSourceError(
        f"{path}: no train.csv/train.tsv, no train/ folder and no class folders of .txt files; see the "
        "sentiment task's data formats"
    )


# ---- labels ------------------------------------------------------------------------------------------------
def class_names_for(labels: list[str]) -> list[str]:
    """Sorted class names; numeric labels sort as numbers, and 0/1 become negative/positive (SST, IMDb)."""
    unique = set(labels)
    if unique <= {"0", "1"}:
        return ["negative", "positive"]
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def label_ids(labels: list[str], class_names: list[str]) -> list[int]:
    if class_names == ["negative", "positive"]:
        mapping = {"0": 0, "1": 1, "negative": 0, "positive": 1}
    else:
        mapping = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(labels) - set(mapping))
    if unknown:
        raise DataSourceError(f"label {unknown[0]!r} appears only outside the training split; classes: "
                              f"{', '.join(class_names)}")
    return [mapping[v] for v in labels]
