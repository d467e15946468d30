"""The administrator's pages: progress, reference Yanagihara scores (trainer), results so far."""
import math

from aiohttp import web

from ..base.errors import InputError
from ..base.vocabulary import ITEM_TITLES, ITEMS, SCORE_WORDS, SCORES
from .pages import STUDY, e, page, refuse, shown
from .questions import WORDS, words


async def admin(request):
    study = request.app[STUDY]
    # A rater is done with every question answered; a trainee once they finished (scores then final).
    done = (lambda p: p["finished_at"]) if study.mode == "trainer" else (lambda p: p["total"] and p["answered"] == p["total"])
    rows = "".join(f"<tr><td>{e(p['label'])}</td><td>{p['answered']} of {p['total']}</td>"
                   f"<td>{'done' if done(p) else 'in progress' if p['answered'] else 'not started'}</td></tr>"
                   for p in study.progress())
    counts = study.conn.execute("SELECT media, COUNT(*) FROM images WHERE kind = 'generated' GROUP BY media "
                                "ORDER BY media").fetchall()
    generated = " and ".join(f"{n} generated {WORDS[m]['item' if n == 1 else 'items']}" for m, n in counts)
    methods = ", ".join(e(r[0]) for r in study.conn.execute("SELECT name FROM methods ORDER BY id"))
    trainer = ""
    if study.mode == "trainer":
        missing = study.missing_reference()
        trainer = ('<p><a class="button" href="/admin/reference">Reference scores</a> '
                   + (f'<span class="need">{len(missing)} still needed before trainees can start</span>' if missing
                      else '<span class="good">complete</span>') + "</p>")
    return page("Study admin", f"<h1>Study administration ({e(study.mode)} study)</h1>"
                               f"<p>{generated}; methods (never shown to raters): {methods}."
                               + (" Feedback to trainees: " + ("after each one." if study.meta["feedback"] == "image"
                                                                   else "at the end.")
                                  if study.mode == "trainer" else "") + f"</p>{trainer}"
                               f'<p><a class="button" href="/admin/results">Results so far</a></p>'
                               f"<h2>Progress</h2><table><tr><th>who</th><th>answered</th><th>state</th></tr>{rows}</table>"
                               "<p class=help>Add raters with <code>python -m palsysim study invite STUDY --raters N"
                               "</code>; the full results with box plots: <code>python -m palsysim study results STUDY "
                               "--out DIR</code>.</p>")


async def reference_page(request, message="", status=200):
    study = request.app[STUDY]
    if study.mode != "trainer":
        raise web.HTTPSeeOther("/admin")
    ref, patients = study.reference(), study.patients()
    generated = words(r[0] for r in study.conn.execute("SELECT DISTINCT media FROM images WHERE kind = 'generated'"))
    sources = words(m for p in patients for _, m in p["photos"].values())
    needed = {(r["patient_id"], r["expression"]) for r in study.conn.execute(
        "SELECT DISTINCT patient_id, expression FROM images WHERE kind = 'generated'")}
    csrf = study.csrf(request["token"])
    blocks = []
    for p in patients:
        cells = []
        for item in ITEMS:
            have = ref.get((p["id"], item))
            options = '<option value="">-</option>' + "".join(
                f'<option value="{s}"{" selected" if have == s else ""}>{s}</option>' for s in SCORES)
            photo = _photo(p, item, sources["source"])
            need = '<span class="need">needed</span>' if (p["id"], item) in needed and have is None else ""
            cells.append(f'<label>{photo}<br>{e(ITEM_TITLES[item])} {need}'
                         f'<select name="{p["id"]}:{item}">{options}</select></label>')
        blocks.append(f'<h2>{e(p["label"])}</h2><div class="items">{"".join(cells)}</div>')
    return page("Reference scores", f'<p><a href="/admin">&larr; admin</a></p><h1>Reference Yanagihara scores</h1>'
                                    f"{message}<p>Score each item of each patient 0, 2 or 4 (0 = {SCORE_WORDS[0]}, "
                                    f"2 = {SCORE_WORDS[2]}, 4 = {SCORE_WORDS[4]}). Generated "
                                    f"{generated['items']} inherit the score of their patient's item; '-' leaves an item "
                                    "without a score.</p>"
                                    f'<form method="post" action="/admin/reference"><input type="hidden" name="csrf" '
                                    f'value="{csrf}">{"".join(blocks)}<p><button class="button" type="submit">Save all '
                                    "scores</button></p></form><h2>Or import a CSV</h2><p>Columns: <code>patient,"
                                    f"{','.join(ITEMS)}</code>; patient as <code>patient 1</code> or <code>1</code>; "
                                    'blank cells keep the score. <a href="/admin/reference.csv">Download the current '
                                    "scores as that CSV</a>.</p>"
                                    '<form method="post" action="/admin/reference/import" enctype="multipart/form-data">'
                                    f'<input type="hidden" name="csrf" value="{csrf}"><input type="file" name="csv" '
                                    'accept=".csv,text/csv" required> <button class="button" type="submit">Import</button>'
                                    "</form>", status)


def _photo(patient, item, called):
    """A patient's item beside its score: a photo links to its full size; a video plays in place. called: what
    the study's patient items are (photo, video, photo or video)."""
    if item not in patient["photos"]:
        return f"<i>no {called}</i>"
    image_id, media = patient["photos"][item]
    tag = shown(image_id, media, f'{patient["label"]}, {item}')
    if media == "video":
        return tag
    return f'<a href="/img/{image_id}" target="_blank" title="open at full size">{tag}</a>'


async def reference_save(request):
    study, form = request.app[STUDY], request["form"]
    scores = {}
    for key, value in form.items():
        if key == "csrf":
            continue
        p, _, item = key.partition(":")
        try:
            scores[(int(p), item)] = int(value) if value != "" else None
        except ValueError:
            return refuse(400, f"Not a score: {value!r}")
    try:
        study.set_reference(scores)
    except InputError as ex:
        return await _not_saved(request, ex)
    return await reference_page(request, '<p class="good">Saved.</p>')


async def _not_saved(request, problem):
    """The reference page again, with what was wrong: a 400, and nothing of the request saved."""
    return await reference_page(request, f'<p class="error">{e(str(problem))}</p>', 400)


async def reference_import(request):
    study, upload = request.app[STUDY], request["form"].get("csv")
    try:
        if not hasattr(upload, "file"):
            raise InputError("choose a CSV file first")
        data = upload.file.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("the file is not UTF-8 text: save the scores as CSV UTF-8 and import that file") from None
        n = study.reference_from_csv(text)
    except InputError as ex:
        return await _not_saved(request, ex)
    return await reference_page(request, f'<p class="good">Imported {n} scores.</p>')


async def reference_csv(request):
    return web.Response(text=request.app[STUDY].reference_csv(), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="reference_scores.csv"'})


TABLE_TITLES = {"table1": "Table I: mean and SD per method and criterion", "alpha": "Inter-rater reliability "
                "(Krippendorff's alpha, ordinal, 95% bootstrap interval)", "raters": "Per rater",
                "trainees": "Agreement with the reference per trainee and item (quadratic-weighted kappa)",
                "totals": "Total scores per synthetic person", "class": "The class per item"}


def _cell(v):
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"  # alpha with one rater, kappa with one score throughout
    return "" if v is None else e(str(v))


async def results_page(request):
    from .stats import results
    study = request.app[STUDY]
    r = results(study, boot=200)
    how = ("Bootstrap intervals here use 200 resamples; <code>study results</code> uses 1000 and writes CSV files "
           "and box plots." if study.mode == "rating" else "<code>study results</code> writes these as CSV files.")
    tables = "".join(f"<h2>{e(TABLE_TITLES[name])}</h2><table><tr>{''.join(f'<th>{e(f)}</th>' for f in fields)}</tr>"
                     + "".join("<tr>" + "".join(f"<td>{_cell(row.get(f))}</td>" for f in fields) + "</tr>"
                               for row in rows) + "</table>"
                     for name, (rows, fields) in r["tables"].items() if name in TABLE_TITLES)
    return page("Results", f'<p><a href="/admin">&larr; admin</a></p><h1>Results so far</h1><p class=help>{how}</p>'
                           f"{tables or '<p>No answers yet.</p>'}")
