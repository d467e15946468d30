"""The study's SQLite database (WAL, one transaction per answer) and its folder of opaque-id images."""
import datetime
import hashlib
import hmac
import os
import random
import re
import secrets
import shutil
import sqlite3

from ..base.errors import InputError
from ..base.layout import find_patients, source_item
from ..base.video_files import refuse_unreadable_media
from ..base.vocabulary import ITEMS, SCORES
from .folders import DB, IMAGES, new_study_folder
from .inputs import chosen_methods, find_generated
from .media import FILES, copy_in, media_of
from .questions import CRITERIA, SCALE, YANAGIHARA

TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")  # secrets.token_urlsafe's alphabet

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE methods(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE patients(id INTEGER PRIMARY KEY, label TEXT UNIQUE NOT NULL);
-- kind 'source': a patient's photo; 'generated': a method's image of that patient and expression.
-- variant numbers the generated images of one method (one synthetic person = one trainer case).
-- source pairs a generated image with the photo it was made from: the item, or <item>/photo<k> (layout.py).
-- media: what the item is, a still image or an expression video (media.py's files of each).
CREATE TABLE images(id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('source', 'generated')),
                    method_id INTEGER REFERENCES methods(id), patient_id INTEGER NOT NULL REFERENCES patients(id),
                    expression TEXT NOT NULL, variant INTEGER, source TEXT NOT NULL,
                    media TEXT NOT NULL DEFAULT 'image' CHECK (media IN ('image', 'video')));
CREATE TABLE raters(id INTEGER PRIMARY KEY, label TEXT UNIQUE NOT NULL, token_hash TEXT UNIQUE NOT NULL,
                    seed TEXT NOT NULL, finished_at TEXT);
CREATE TABLE tasks(rater_id INTEGER NOT NULL REFERENCES raters(id), position INTEGER NOT NULL,
                   image_id TEXT NOT NULL REFERENCES images(id), criterion TEXT NOT NULL,
                   PRIMARY KEY (rater_id, position), UNIQUE (rater_id, image_id, criterion));
CREATE TABLE answers(rater_id INTEGER NOT NULL, position INTEGER NOT NULL, value INTEGER NOT NULL,
                     answered_at TEXT NOT NULL, PRIMARY KEY (rater_id, position),
                     FOREIGN KEY (rater_id, position) REFERENCES tasks(rater_id, position));
CREATE TABLE reference(patient_id INTEGER NOT NULL REFERENCES patients(id), item TEXT NOT NULL,
                       score INTEGER NOT NULL CHECK (score IN (0, 2, 4)), PRIMARY KEY (patient_id, item));
"""


def natural_key(name):
    """patient_2 sorts before patient_10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def create_study(out, images, patients=None, mode="rating", feedback="image", seed=0, per_method=None, methods=None):
    """Copy the images under opaque ids into a new study folder `out`; returns the admin token.

    Built in out + ".partial" and renamed at the end: a failed create leaves no half study, a killed one
    a .partial folder the next create removes.
    """
    if mode not in ("rating", "trainer"):
        raise InputError(f"unknown --mode {mode!r}: use rating or trainer")
    if feedback not in ("image", "end"):
        raise InputError(f"unknown --feedback {feedback!r}: use image or end")
    if per_method is not None and per_method < 1:
        raise InputError(f"--per-method {per_method}: give at least 1 (images per method), or leave it out for all")
    tmp = new_study_folder(out, [images, patients])
    try:
        admin = _build(tmp, images, patients, mode, feedback, seed, per_method, methods)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return admin


def _build(tmp, images, patients, mode, feedback, seed, per_method, methods):
    """The study's database and image copies, written into the folder tmp; returns the admin token."""
    generated = chosen_methods(find_generated(images), methods)
    if not patients:
        raise InputError(f"--mode {mode} needs --patients DIR (the source photos, DIR/<patient>/<expression>.png): "
                         + ("raters compare the generated images with them" if mode == "rating"
                            else "the reference scores are entered for them"))
    # a patient's videos are sources only where generated videos are rated: a photo-only study keeps refusing
    # nothing that it did before (a patient with grin.png and grin.mp4)
    sources = find_patients(patients, videos=any(media_of(g[3]) == "video" for g in generated))
    missing = sorted({f"{p}/{e}" for _, p, e, _ in generated if e not in sources.get(p, {})})
    if missing:
        raise InputError(f"generated images without a source photo in --patients ({len(missing)}): "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; add the photos or remove "
                         "those folders")
    if per_method:
        rng = random.Random(f"{seed}:sample")
        by_method = {}
        for g in generated:
            by_method.setdefault(g[0], []).append(g)
        generated = sorted(x for gs in by_method.values() for x in rng.sample(gs, min(per_method, len(gs))))

    used = sorted({p for _, p, _, _ in generated}, key=natural_key)
    # Every source the study copies is read before the first copy (encoding a video takes seconds): a cut file is
    # named with the others up front. The generated ones were read for their digests (chosen_methods).
    refuse_unreadable_media([path for p in used for path in sources[p].values()])
    conn = sqlite3.connect(os.path.join(tmp, DB))
    try:
        conn.executescript(SCHEMA)
        admin = secrets.token_urlsafe(24)
        with conn:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("mode", mode), ("feedback", feedback), ("seed", str(seed)), ("created", now()),
                ("csrf_secret", secrets.token_hex(32)), ("admin_hash", token_hash(admin))])
            patient_id = {p: i + 1 for i, p in enumerate(used)}
            conn.executemany("INSERT INTO patients VALUES (?, ?)", [(i, f"patient {i}") for i in patient_id.values()])
            # Table I's rows and the box plots follow this order: the one asked for (--methods, or an
            # experiment's own), else the folders' natural order.
            present = {m for m, _, _, _ in generated}
            methods = [m for m in dict.fromkeys(methods or ()) if m in present] or sorted(present, key=natural_key)
            method_id = {m: i + 1 for i, m in enumerate(methods)}
            conn.executemany("INSERT INTO methods VALUES (?, ?)", [(i, m) for m, i in method_id.items()])
            for p in used:
                for e, path in sources[p].items():
                    _add_image(conn, tmp, path, "source", None, patient_id[p], e, None)
            variants, per_method_count = {}, {}
            for m, p, e, path in generated:
                stem = os.path.splitext(os.path.basename(path))[0]
                if (m, p, stem) not in variants:
                    per_method_count[m] = variants[(m, p, stem)] = per_method_count.get(m, 0) + 1
                v = variants[(m, p, stem)]
                _add_image(conn, tmp, path, "generated", method_id[m], patient_id[p], e, v)
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return admin


def _add_image(conn, folder, path, kind, method_id, patient_id, source, variant):
    image_id = secrets.token_hex(16)
    media = copy_in(folder, image_id, path, kind, patient_id, source)
    conn.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (image_id, kind, method_id, patient_id, source_item(source), variant, source, media))


class Study:
    """One open study: every method is one short query or one transaction."""

    def __init__(self, folder):
        path = os.path.join(folder, DB)
        if not os.path.isfile(path):
            raise InputError(f"{folder} is not a study folder (no {DB}; make one with `python -m palsysim study create`)")
        self.folder = os.path.abspath(folder)
        self.conn = sqlite3.connect(path, isolation_level=None)  # explicit transactions only
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # an answer acknowledged is an answer on disk
        self.conn.execute("PRAGMA foreign_keys=ON")
        columns = [r["name"] for r in self.conn.execute("PRAGMA table_info(images)")]
        if "source" not in columns:
            # a study made before photos had sources: each image's source is its item, as it was
            self.conn.execute("ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT ''")
            self.conn.execute("UPDATE images SET source = expression")
        if "media" not in columns:  # a study made before videos: every item is an image
            self.conn.execute("ALTER TABLE images ADD COLUMN media TEXT NOT NULL DEFAULT 'image'")
        self.meta = {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM meta")}
        self.mode = self.meta["mode"]

    def close(self):
        self.conn.close()

    def transaction(self):
        return _Transaction(self.conn)

    # --- people -----------------------------------------------------------------------------------
    def add_raters(self, n):
        """n new raters (or trainees), each with a seeded, recorded task order; returns their tokens."""
        if n < 1:
            raise InputError("--raters must be at least 1")
        tokens = []
        with self.transaction():
            start = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM raters").fetchone()[0]
            for k in range(start + 1, start + n + 1):
                token = secrets.token_urlsafe(24)
                seed = f"{self.meta['seed']}:rater {k}"
                self.conn.execute("INSERT INTO raters (id, label, token_hash, seed) VALUES (?, ?, ?, ?)",
                                  (k, f"{'trainee' if self.mode == 'trainer' else 'rater'} {k}", token_hash(token),
                                   seed))
                self.conn.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?)",
                                      [(k, i + 1, img, c) for i, (img, c) in enumerate(self._order(seed))])
                tokens.append(token)
        return tokens

    def _order(self, seed):
        """[(image id, criterion)]: rating, per criterion (CRITERIA order) all images shuffled; trainer, shuffled."""
        rng = random.Random(seed)
        images = [r[0] for r in self.conn.execute("SELECT id FROM images WHERE kind = 'generated' ORDER BY id")]
        if self.mode == "trainer":
            rng.shuffle(images)
            return [(i, YANAGIHARA) for i in images]
        order = []
        for c in CRITERIA:
            block = list(images)
            rng.shuffle(block)
            order += [(i, c) for i in block]
        return order

    def new_admin_token(self):
        token = secrets.token_urlsafe(24)
        with self.transaction():
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'admin_hash'", (token_hash(token),))
        return token

    def who(self, token):
        """A session token -> ("admin", None) | ("rater", rater row) | None."""
        if not token or not TOKEN.match(token):  # a cookie or link of other characters is no session
            return None
        h = token_hash(token)
        # read per request, not from self.meta: `invite --admin` revokes a leaked link while the server runs
        admin = self.conn.execute("SELECT value FROM meta WHERE key = 'admin_hash'").fetchone()[0]
        if hmac.compare_digest(h, admin):
            return "admin", None
        row = self.conn.execute("SELECT * FROM raters WHERE token_hash = ?", (h,)).fetchone()
        return ("rater", row) if row else None

    def csrf(self, token):
        return hmac.new(self.meta["csrf_secret"].encode(), token.encode(), hashlib.sha256).hexdigest()

    # --- a rater's tasks and answers --------------------------------------------------------------
    def tasks(self, rater_id):
        """[{position, image_id, media, criterion, expression, source_id, source_media, value}] of one rater, in
        their order."""
        return [dict(r) for r in self.conn.execute(
            """SELECT t.position, t.image_id, i.media, t.criterion, i.expression, s.id AS source_id,
                      s.media AS source_media, a.value
               FROM tasks t JOIN images i ON i.id = t.image_id
               LEFT JOIN images s ON s.kind = 'source' AND s.patient_id = i.patient_id AND s.source = i.source
               LEFT JOIN answers a ON a.rater_id = t.rater_id AND a.position = t.position
               WHERE t.rater_id = ? ORDER BY t.position""", (rater_id,))]

    def answer(self, rater_id, position, value):
        """Save one answer in its own transaction (a changed answer replaces the earlier one)."""
        task = self.conn.execute("SELECT criterion FROM tasks WHERE rater_id = ? AND position = ?",
                                 (rater_id, position)).fetchone()
        if task is None:
            raise InputError(f"no question {position}")
        allowed = SCORES if task["criterion"] == YANAGIHARA else SCALE
        if value not in allowed:
            raise InputError(f"answer {value} is not one of {', '.join(map(str, allowed))}")
        with self.transaction():
            self.conn.execute("INSERT INTO answers VALUES (?, ?, ?, ?) ON CONFLICT (rater_id, position) "
                              "DO UPDATE SET value = excluded.value, answered_at = excluded.answered_at",
                              (rater_id, position, value, now()))

    def finish(self, rater_id):
        with self.transaction():
            self.conn.execute("UPDATE raters SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                              (now(), rater_id))

    def may_see(self, who, image_id):
        """Admins see every image; a rater only their own tasks' images and those images' source photos."""
        if who[0] == "admin":
            return self.conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is not None
        return self.conn.execute(
            """SELECT 1 FROM tasks t JOIN images i ON i.id = t.image_id
               LEFT JOIN images s ON s.kind = 'source' AND s.patient_id = i.patient_id AND s.source = i.source
               WHERE t.rater_id = ? AND (i.id = ? OR (s.id = ? AND ? = 'rating')) LIMIT 1""",
            (who[1]["id"], image_id, image_id, self.mode)).fetchone() is not None

    def media_file(self, image_id, ext):
        """An opaque id (already checked against IMAGE_ID) and a file type -> (its file in the study folder,
        Content-Type), or None where the item is not stored as that type."""
        row = self.conn.execute("SELECT media FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None or ext not in FILES[row["media"]]:
            return None
        return os.path.join(self.folder, IMAGES, image_id + ext), FILES[row["media"]][ext]

    def progress(self):
        """[{label, answered, total, finished_at}] of every rater (counts only)."""
        return [dict(r) for r in self.conn.execute(
            """SELECT r.label, r.finished_at, COUNT(t.position) AS total, COUNT(a.value) AS answered
               FROM raters r LEFT JOIN tasks t ON t.rater_id = r.id
               LEFT JOIN answers a ON a.rater_id = t.rater_id AND a.position = t.position
               GROUP BY r.id ORDER BY r.id""")]

    # --- reference Yanagihara scores (trainer) ----------------------------------------------------
    def patients(self):
        """[{id, label, photos: {expression: (source image id, media)}}]."""
        out = []
        for p in self.conn.execute("SELECT id, label FROM patients ORDER BY id"):
            photos = {}  # an item's first photo where it has many
            for r in self.conn.execute("SELECT id, expression, media FROM images WHERE kind = 'source' AND "
                                       "patient_id = ? ORDER BY source", (p["id"],)):
                photos.setdefault(r["expression"], (r["id"], r["media"]))
            out.append({"id": p["id"], "label": p["label"], "photos": photos})
        return out

    def reference(self):
        """{(patient id, item): score}."""
        return {(r["patient_id"], r["item"]): r["score"] for r in self.conn.execute("SELECT * FROM reference")}

    def missing_reference(self):
        """["patient k: item", ...] that generated images need and no reference score covers."""
        return [f"{r['label']}: {r['expression']}" for r in self.conn.execute(
            """SELECT DISTINCT p.id, p.label, i.expression FROM images i JOIN patients p ON p.id = i.patient_id
               LEFT JOIN reference r ON r.patient_id = i.patient_id AND r.item = i.expression
               WHERE i.kind = 'generated' AND r.score IS NULL ORDER BY p.id, i.expression""")]

    def set_reference(self, scores):
        """{(patient id, item): score or None (clears)} -> saved in one transaction."""
        ids = {r[0] for r in self.conn.execute("SELECT id FROM patients")}
        for (p, item), s in scores.items():
            if p not in ids or item not in ITEMS or (s is not None and s not in SCORES):
                raise InputError(f"reference score {s!r} for patient {p}, {item}: scores are 0, 2 or 4")
        with self.transaction():
            for (p, item), s in scores.items():
                if s is None:
                    self.conn.execute("DELETE FROM reference WHERE patient_id = ? AND item = ?", (p, item))
                else:
                    self.conn.execute("INSERT INTO reference VALUES (?, ?, ?) ON CONFLICT (patient_id, item) "
                                      "DO UPDATE SET score = excluded.score", (p, item, s))

    def reference_from_csv(self, text):
        """CSV with a `patient` column ("patient 3" or "3") and one column per Yanagihara item (0/2/4, blank
        leaves the score as it is) -> saved in one transaction; nothing is saved if any cell is wrong."""
        import csv
        import io
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as e:  # a NUL byte, an unclosed quote ...
            raise InputError(f"not a readable CSV file ({e}): export the scores again as CSV") from None
        labels = {r["label"]: r["id"] for r in self.conn.execute("SELECT id, label FROM patients")}
        extra = [(n, len(row[None])) for n, row in enumerate(rows, start=2) if None in row]
        if extra:
            raise InputError(f"nothing imported: line {extra[0][0]} has {extra[0][1]} cell(s) more than the header row "
                             "has columns; remove them or name their columns in the header")
        if not rows or "patient" not in rows[0]:
            raise InputError("the CSV needs a header row: patient," + ",".join(ITEMS))
        unknown = [c for c in rows[0] if c not in ITEMS and c != "patient"]
        if unknown:
            raise InputError(f"unknown CSV column(s) {', '.join(unknown)}: use patient," + ",".join(ITEMS))
        scores, problems = {}, []
        for n, row in enumerate(rows, start=2):
            name = (row.get("patient") or "").strip()
            p = labels.get(name) or labels.get(f"patient {name}")
            if p is None:
                problems.append(f"line {n}: no patient {name!r} in this study (use {', '.join(labels)})")
                continue
            for item in ITEMS:
                cell = (row.get(item) or "").strip()
                if cell:
                    if cell not in ("0", "2", "4"):
                        problems.append(f"line {n}, {item}: {cell!r} is not 0, 2 or 4")
                    else:
                        scores[(p, item)] = int(cell)
        if problems:
            raise InputError("nothing imported: " + "; ".join(problems))
        self.set_reference(scores)
        return len(scores)

    def reference_csv(self):
        """The current reference scores as the CSV reference_from_csv reads (blank = not entered)."""
        ref = self.reference()
        lines = ["patient," + ",".join(ITEMS)]
        for p in self.patients():
            lines.append(p["label"] + "," + ",".join(str(ref.get((p["id"], i), "")) for i in ITEMS))
        return "\n".join(lines) + "\n"


class _Transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *_):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
