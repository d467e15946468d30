"""The study's web app (aiohttp): server-rendered pages, one small key-handling script, no external assets.

Every request but /start/<token> needs the session cookie that link sets: a rater's (or trainee's)
token, or the admin's. Images and videos are served only by opaque id, only to those whose tasks show them.
POSTs need the session's CSRF field, and a browser's same-origin marks (Sec-Fetch-Site, Origin).
"""
import ipaddress
import os
import sys

from aiohttp import web

from ..base.errors import InputError
from ..base.vocabulary import ITEM_TITLES, REST_SCORE_WORDS, SCORE_WORDS, SCORES
from .admin import admin, reference_csv, reference_import, reference_page, reference_save, results_page
from .folders import IMAGE_ID
from .pages import CSP, SECONDS_PER_QUESTION, STUDY, e, figure, instructions, page, refuse
from .questions import CRITERIA, SCALE, YANAGIHARA, worded, words
from .store import Study
from .trainer import trainee_summary, verdict

COOKIE = "palsysim_study"
HOSTS = web.AppKey("hosts", object)  # the Host headers accepted, or None for any
UPLOADS = {"reference_import": "csv"}  # the forms that take a file, and its field; every other field is text


# --- middleware: headers, host, session, CSRF ------------------------------------------------------

@web.middleware
async def headers(request, handler):
    security = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
    try:
        response = await handler(request)
    except web.HTTPException as ex:  # redirects and 404s carry the same headers
        ex.headers.update(security)
        raise
    response.headers.update(security)
    return response


@web.middleware
async def authorise(request, handler):
    allowed = request.app[HOSTS]
    if allowed is not None and request.host not in allowed:
        return refuse(421, "This study answers only on its own address.")  # DNS rebinding
    study = request.app[STUDY]
    if request.match_info.route.name == "start":
        return await handler(request)
    token = request.cookies.get(COOKIE)
    who = study.who(token)
    if who is None:
        return refuse(403, "Open the personal link you were given (this browser has no valid study session).")
    if request.path.startswith("/admin") and who[0] != "admin":
        return refuse(403, "This page is for the study's administrator only.")
    if request.method == "POST":
        try:
            form = await request.post()
        except (ValueError, LookupError) as ex:  # a cut-short multipart body, bytes not UTF-8, an unknown charset
            return refuse(400, f"The form could not be read ({ex}); reload the page and send it again.")
        files = [k for k, v in form.items() if not isinstance(v, str) and k != UPLOADS.get(request.match_info.route.name)]
        if files:
            return refuse(400, f"The field {files[0]!r} was sent as a file, and this form takes text only; reload "
                               "the page and use its buttons.")
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if (site not in (None, "same-origin") or (origin is not None and origin != f"{request.scheme}://{request.host}")
                or form.get("csrf") != study.csrf(token)):
            return refuse(403, "This form did not come from this study's own page; reload the page and try again.")
        request["form"] = form
    request["who"], request["token"] = who, token
    try:
        return await handler(request)
    except NoSuchQuestion as ex:
        return page("No such question", f'<h1>No such question</h1><p class="error">{e(str(ex))}</p>'
                                        f'<p><a class="button" href="/">Back to the start</a></p>', 404)
    except InputError as ex:  # what the request asked for cannot be: the message says why
        return refuse(400, str(ex))


# --- pages ----------------------------------------------------------------------------------------

async def start(request):
    study = request.app[STUDY]
    token = request.match_info["token"]
    who = study.who(token)
    if who is None:
        # whoever used this browser before is logged out: the next person must not answer as them
        response = refuse(403, "This link is not valid for this study; whoever was using the study in this "
                               "browser is now logged out. Open your own personal link.")
        response.del_cookie(COOKIE, path="/")
        return response
    response = web.HTTPSeeOther("/admin" if who[0] == "admin" else "/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", path="/")
    raise response


def _rater(request):
    who = request["who"]
    if who[0] != "rater":
        raise web.HTTPSeeOther("/admin")
    return who[1]


def _waiting(study):
    if study.mode == "trainer" and study.missing_reference():
        return page("Please wait", "<h1>Not ready yet</h1><p>The supervisor has not entered all reference scores yet. "
                                   "Come back to this page a little later.</p>")
    return None


async def home(request):
    study, rater = request.app[STUDY], _rater(request)
    if (w := _waiting(study)) is not None:
        return w
    tasks = study.tasks(rater["id"])
    todo = [t for t in tasks if t["value"] is None]
    if not todo or rater["finished_at"]:
        raise web.HTTPSeeOther("/done")
    kind = words(t["media"] for t in tasks)["items"]
    what = f"{kind} to score on the Yanagihara items" if study.mode == "trainer" else \
        f"questions about generated {kind}"
    first = "Start" if len(todo) == len(tasks) else f"Continue with question {todo[0]['position']}"
    minutes = max(1, round(len(todo) * SECONDS_PER_QUESTION / 60))
    return page("Study", f"<h1>Welcome, {e(rater['label'])}</h1><p>You have {len(tasks)} {what}; "
                         f"{len(tasks) - len(todo)} are answered, about {minutes} minutes of work are left. Every "
                         "answer is saved the moment you give it: you can stop at any time and come back with the "
                         f"same link.</p>{instructions(study, tasks)}"
                         f'<p><a class="button" href="/task/{todo[0]["position"]}" data-key="ArrowRight">{first}</a></p>'
                         f"{_hand_over(study, request)}")


def _hand_over(study, request):
    """A shared computer: the next rater must not go on answering as this one."""
    return (f'<form method="post" action="/hand-over"><input type="hidden" name="csrf" '
            f'value="{study.csrf(request["token"])}"><button class="handover" type="submit">Hand over to the next '
            f"rater (log out this browser)</button></form>")


async def hand_over(request):
    response = page("Handed over", "<h1>This browser is logged out</h1><p>Every answer is saved. The next rater "
                                   "opens their own personal link.</p>")
    response.del_cookie(COOKIE, path="/")
    return response


def _first_open(tasks, t):
    """While an image's own-photo-free block (naturalness) has open questions, the blocks that show the
    patient's photo stay closed: the position to answer first, or None."""
    if t["criterion"] == YANAGIHARA or not CRITERIA[t["criterion"]]["with_source"]:
        return None
    alone = [x["position"] for x in tasks if x["criterion"] in CRITERIA
             and not CRITERIA[x["criterion"]]["with_source"] and x["value"] is None]
    return alone[0] if alone else None


class NoSuchQuestion(InputError):
    """A question number past either end (a typed or old link): the study's own page, with the way back."""


def _task(request):
    study, rater = request.app[STUDY], _rater(request)
    tasks = study.tasks(rater["id"])
    n = request.match_info["n"]
    if not (n.isascii() and n.isdigit()):  # int() would take "²" or "٣" too
        raise InputError(f"{n!r} is not a question number: questions are numbered 1 to {len(tasks)}.")
    if not 1 <= int(n) <= len(tasks):
        raise NoSuchQuestion(f"There is no question {n}: questions are numbered 1 to {len(tasks)}.")
    return study, rater, tasks, tasks[int(n) - 1]


def _bar(tasks, position):
    done = sum(t["value"] is not None for t in tasks)
    return (f'<div class="bar"><span>Question {position} of {len(tasks)}</span>'
            f'<progress value="{done}" max="{len(tasks)}"></progress><span>{done} answered</span></div>')


def _nav(tasks, position, next_label="Next"):
    prev = f'<a href="/task/{position - 1}" data-key="ArrowLeft">&larr; Previous</a>' if position > 1 else \
        '<a class="off">&larr;</a>'
    nxt = (f'<a href="/task/{position + 1}" data-key="ArrowRight">{next_label} &rarr;</a>' if position < len(tasks)
           else '<a href="/done" data-key="ArrowRight">Finish &rarr;</a>')
    return f"<nav>{prev}{nxt}</nav>"


def _score_final(study, rater, t):
    """A trainee's score is final once its feedback was shown (per image) or the trainee finished."""
    return study.mode == "trainer" and (rater["finished_at"] or (t["value"] is not None and study.meta["feedback"] == "image"))


async def task_page(request):
    study, rater, tasks, t = _task(request)
    if (w := _waiting(study)) is not None:
        return w
    if _score_final(study, rater, t):
        raise web.HTTPSeeOther(f"/task/{t['position']}/feedback" if not rater["finished_at"] else "/done")
    if (first := _first_open(tasks, t)) is not None:
        raise web.HTTPSeeOther(f"/task/{first}")
    csrf = study.csrf(request["token"])
    item, kind = f"Yanagihara item: {ITEM_TITLES.get(t['expression'], t['expression'])}", words([t["media"]])["item"]
    if t["criterion"] == YANAGIHARA:
        rest = t["expression"] == "rest"
        title, question = item, ("Score the symmetry of this face at rest." if rest
                                 else f"Score the movement of the palsied side in this {kind}.")
        choices, ends = [(s, (REST_SCORE_WORDS if rest else SCORE_WORDS)[s]) for s in SCORES], ""
        figures = figure(t["image_id"], t["media"], f"{kind.capitalize()} to score", single=True)
        keys = "Keys 0, 2, 4 score; &larr; &rarr; move without scoring."
    else:
        q = worded(t["criterion"], [t["media"]], [t["source_media"]])
        title, question = q["title"], q["question"]
        choices = [(s, q["low"] if s == SCALE[0] else q["high"] if s == SCALE[-1] else "") for s in SCALE]
        ends = f'<div class="ends"><span>1 = {e(q["low"])}</span><span>5 = {e(q["high"])}</span></div>'
        generated = figure(t["image_id"], t["media"], "Generated face", single=not q["with_source"])
        figures = figure(t["source_id"], t["source_media"], "Patient's face") + generated if q["with_source"] \
            else generated
        question = f"{question} ({item})" if q["with_source"] else question
        keys = "Keys 1-5 answer and go on; &larr; &rarr; move without answering."
    buttons = "".join(f'<button type="submit" name="value" value="{s}" data-key="{s}"'
                      f'{" class=chosen" if t["value"] == s else ""}>{s}<small>{e(w)}</small></button>'
                      for s, w in choices)
    return page(title, f"{_bar(tasks, t['position'])}<h1>{e(title)}</h1><p class=question>{e(question)}</p>"
                       f'<div class="images">{figures}</div>'
                       f'<form method="post" action="/task/{t["position"]}"><input type="hidden" name="csrf" '
                       f'value="{csrf}"><div class="scale">{buttons}</div></form>{ends}'
                       f'{_nav(tasks, t["position"])}<p class="help">{keys}</p>{_hand_over(study, request)}')


async def task_answer(request):
    study, rater, tasks, t = _task(request)
    if (w := _waiting(study)) is not None:
        return w
    if _score_final(study, rater, t):
        return refuse(409, f"This {words([t['media']])['item']} is already scored; scores are final once the "
                           "feedback has been shown.")
    if (first := _first_open(tasks, t)) is not None:
        return refuse(409, f"Answer the naturalness questions first (question {first} is open): they come before "
                           "any page that shows the patient's face.")
    try:
        study.answer(rater["id"], t["position"], int(request["form"].get("value", "")))
    except (ValueError, InputError) as ex:
        return refuse(400, f"Not a valid answer ({ex}); go back and choose one of the buttons.")
    if study.mode == "trainer" and study.meta["feedback"] == "image":
        raise web.HTTPSeeOther(f"/task/{t['position']}/feedback")
    raise web.HTTPSeeOther(f"/task/{t['position'] + 1}" if t["position"] < len(tasks) else "/done")


async def feedback_page(request):
    study, rater, tasks, t = _task(request)
    if study.mode != "trainer" or t["value"] is None:
        raise web.HTTPSeeOther(f"/task/{t['position']}")
    reference = _reference_of(study, t["image_id"])
    scored = f"Scored {words([t['media']])['item']}"
    return page("Feedback", f"{_bar(tasks, t['position'])}<h1>Yanagihara item: {e(ITEM_TITLES[t['expression']])}</h1>"
                            f'<div class="images">{figure(t["image_id"], t["media"], scored, True)}</div>'
                            f'<p class="feedback">Your score: <b>{t["value"]}</b> ({SCORE_WORDS[t["value"]]}). '
                            f'Reference: <b>{reference}</b> ({SCORE_WORDS[reference]}).<br>'
                            f'Your score {verdict(t["value"], reference)}.</p>'
                            f'{_nav(tasks, t["position"])}<p class="help">&rarr; goes on.</p>')


def _reference_of(study, image_id):
    return study.conn.execute("SELECT r.score FROM images i JOIN reference r ON r.patient_id = i.patient_id "
                              "AND r.item = i.expression WHERE i.id = ?", (image_id,)).fetchone()[0]


async def done_page(request):
    study, rater = request.app[STUDY], _rater(request)
    if (w := _waiting(study)) is not None:
        return w
    tasks = study.tasks(rater["id"])
    todo = [t["position"] for t in tasks if t["value"] is None]
    csrf = study.csrf(request["token"])
    if todo and not rater["finished_at"]:
        links = ", ".join(f'<a href="/task/{p}">{p}</a>' for p in todo[:30]) + (" ..." if len(todo) > 30 else "")
        return page("Not finished", f"<h1>{len(todo)} of {len(tasks)} questions still open</h1>"
                                    f"<p>Open: {links}</p><p><a class=button href=\"/task/{todo[0]}\" "
                                    f'data-key="ArrowRight">Go to question {todo[0]}</a></p>')
    if study.mode == "rating":
        return page("Thank you", f"<h1>Thank you, {e(rater['label'])}</h1><p>All {len(tasks)} answers are saved. "
                                 "You may close this page. To change an answer, go back to "
                                 f'<a href="/task/{len(tasks)}">the last question</a>.</p>{_hand_over(study, request)}')
    if study.meta["feedback"] == "end" and not rater["finished_at"]:
        kind = words(t["media"] for t in tasks)["items"]
        return page("Finish", f"<h1>All {len(tasks)} {kind} scored</h1><p>You can still go back and change scores. "
                              "Once you finish, your scores are final and you see the reference scores.</p>"
                              f'<form method="post" action="/finish"><input type="hidden" name="csrf" value="{csrf}">'
                              f'<button class="button" type="submit">Finish and show the feedback</button></form>'
                              f'<p><a href="/task/{len(tasks)}">&larr; back to the last question</a></p>')
    return trainee_summary(study, rater)


async def finish(request):
    study, rater = request.app[STUDY], _rater(request)
    tasks = study.tasks(rater["id"])
    if any(t["value"] is None for t in tasks):
        return refuse(409, f"Some {words(t['media'] for t in tasks)['items']} are not scored yet; score them first.")
    study.finish(rater["id"])
    raise web.HTTPSeeOther("/done")


async def media(request):
    """/img/<id> (a PNG) or /video/<id>.mp4|.webm: FileResponse answers Range requests, which seeking needs."""
    study, name = request.app[STUDY], request.match_info["name"]
    image_id, ext = (name, ".png") if request.path.startswith("/img/") else os.path.splitext(name)
    if not IMAGE_ID.match(image_id):
        return refuse(404, "No such image or video.")
    if not study.may_see(request["who"], image_id):
        return refuse(403, "This image or video is not part of your study.")
    found = study.media_file(image_id, ext)
    if found is None:
        return refuse(404, "No such image or video.")
    return web.FileResponse(found[0], headers={"Content-Type": found[1]})


def make_app(study, hosts=None):
    """The aiohttp application of an open Study; hosts: the Host headers accepted (None = any)."""
    app = web.Application(middlewares=[headers, authorise], client_max_size=4 * 1024 * 1024)
    app[STUDY] = study
    app[HOSTS] = hosts
    app.router.add_get("/start/{token}", start, name="start")
    app.router.add_get("/", home)
    app.router.add_get("/task/{n}", task_page)
    app.router.add_post("/task/{n}", task_answer)
    app.router.add_get("/task/{n}/feedback", feedback_page)
    app.router.add_get("/done", done_page)
    app.router.add_post("/finish", finish)
    app.router.add_post("/hand-over", hand_over)
    app.router.add_get("/img/{name}", media)
    app.router.add_get("/video/{name}", media)
    app.router.add_get("/admin", admin)
    app.router.add_get("/admin/reference", reference_page)
    app.router.add_post("/admin/reference", reference_save)
    app.router.add_post("/admin/reference/import", reference_import, name="reference_import")
    app.router.add_get("/admin/reference.csv", reference_csv)
    app.router.add_get("/admin/results", results_page)
    return app


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(folder, host="127.0.0.1", port=8765, lan=False):
    """Serve a study until Ctrl-C: loopback only, unless lan is set (then with a warning)."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port: give one from 1 to 65535 (the default is 8765)")
    loopback = is_loopback(host)
    if not loopback and not lan:
        raise InputError(f"--host {host} is not a loopback address: patient photos would be reachable from the "
                         "network. Add --lan to serve on a LAN on purpose, or leave --host at 127.0.0.1")
    study = Study(folder)
    if not loopback:
        print(f"WARNING: serving patient photos to the network on {host}:{port}. Anyone on this network who has a "
              "link can open it, and the traffic is not encrypted (plain HTTP). Use only a trusted, closed network, "
              "and stop the server (Ctrl-C) when the session is over.", file=sys.stderr, flush=True)
    hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", host)} if loopback else None
    print(f"serving the {study.mode} study on http://{'[' + host + ']' if ':' in host else host}:{port} "
          "(open the links `study invite` printed; Ctrl-C stops; every answer is already saved)", flush=True)
    try:
        web.run_app(make_app(study, hosts), host=host, port=port, print=None, handle_signals=True)
    finally:
        study.close()
