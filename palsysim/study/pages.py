"""The frame every page of the study shares (one stylesheet, one small key-handling script, a strict CSP) and what
the welcome page tells a rater before the first question."""
import base64
import hashlib
import html

from aiohttp import web

from ..base.vocabulary import REST_SCORE_WORDS, SCORE_WORDS, SCORES
from .media import FILES
from .questions import CRITERIA, worded, words
from .store import Study

STUDY = web.AppKey("study", Study)

CSS = """
body{font:17px/1.4 system-ui,sans-serif;margin:0;padding:12px 16px 40px;color:#111;background:#fafafa}
h1{font-size:1.35em;margin:.3em 0}.question{font-size:1.15em;margin:.2em 0 .6em}
.bar{display:flex;align-items:center;gap:12px;flex-wrap:wrap;color:#333}progress{flex:1;min-width:160px;height:14px}
.images{display:flex;gap:16px;flex-wrap:wrap;justify-content:center;margin:8px 0}
figure{margin:0;text-align:center}figcaption{font-weight:600;margin-bottom:4px}
figure img,figure video{width:min(44vw,52vh,460px);height:auto;border:1px solid #ccc;background:#fff}
figure.single img,figure.single video{width:min(90vw,52vh,520px)}
.handover{margin:18px auto 0;display:block;background:none;border:none;color:#1a5fb4;text-decoration:underline;
cursor:pointer;font-size:.85em}
.scale{display:flex;gap:8px;justify-content:center;flex-wrap:wrap;margin:10px 0}
.scale button{min-width:88px;min-height:64px;font-size:1.2em;border:2px solid #555;border-radius:8px;background:#fff;
cursor:pointer;padding:4px 8px}.scale button small{display:block;font-size:.6em;color:#444;max-width:110px}
.scale button.chosen{background:#1a5fb4;color:#fff;border-color:#1a5fb4}.scale button.chosen small{color:#eee}
.ends{display:flex;justify-content:space-between;max-width:620px;margin:0 auto;color:#444;font-size:.9em}
nav{display:flex;justify-content:space-between;max-width:620px;margin:14px auto}
nav a,.button{display:inline-block;padding:10px 18px;border:1px solid #555;border-radius:8px;color:#111;
text-decoration:none;background:#fff;font-size:1em}nav a.off{visibility:hidden}
.help{color:#555;font-size:.85em;text-align:center}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}
.good{color:#176b2c;font-weight:600}.bad{color:#a51d2d;font-weight:600}
.items{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.items label{display:block;border:1px solid #ccc;padding:6px;background:#fff}.items img,.items video{width:100%}
.items select{font-size:1em;width:100%;margin-top:4px}.need{color:#a51d2d;font-size:.85em}
pre{background:#fff;border:1px solid #ccc;padding:8px;white-space:pre-wrap;font-size:.85em}
.feedback{font-size:1.2em;text-align:center}.error{color:#a51d2d;font-weight:600}
"""
# Keys 1-5 (0/2/4 for the trainer) press the answer buttons, arrows the Previous/Next links.
JS = """document.addEventListener("keydown",function(e){
if(e.altKey||e.ctrlKey||e.metaKey||/INPUT|SELECT|TEXTAREA/.test(e.target.tagName))return;
var b=document.querySelector('[data-key="'+e.key+'"]');if(b){e.preventDefault();b.click();}});"""


def _sha(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; img-src 'self'; media-src 'self'; style-src {_sha(CSS)}; script-src {_sha(JS)}; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
e = html.escape


def page(title, body, status=200):
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}<script>{JS}</script></body></html>")
    return web.Response(text=text, content_type="text/html", status=status)


def refuse(status, message):
    return page("Not allowed", f'<h1>Not allowed</h1><p class="error">{e(message)}</p>', status)


def shown(image_id, media, alt, width=None):
    """An item as the page shows it: an <img>, or a <video> the study serves itself in each of its formats (the
    browser plays the first it can). Muted and looping, as the expression repeats; controls to pause and seek."""
    size = f' width="{width}"' if width else ""
    if media == "image":
        return f'<img src="/img/{image_id}" alt="{e(alt)}"{size}>'
    sources = "".join(f'<source src="/video/{image_id}{ext}" type="{kind}">' for ext, kind in FILES["video"].items())
    return (f'<video controls loop muted autoplay playsinline preload="auto" aria-label="{e(alt)}"{size}>{sources}'
            "This browser plays neither MP4 (H.264) nor WebM (VP9) video.</video>")


def figure(image_id, media, caption, single=False):
    return (f'<figure{" class=single" if single else ""}><figcaption>{caption}</figcaption>'
            f'{shown(image_id, media, caption)}</figure>')


SECONDS_PER_QUESTION = 8  # a glance, a comparison and a click; the estimate on the welcome page


def instructions(study, tasks):
    """What is asked and what each end of the scale means, before the first question, worded for what the
    rater's questions show (images, videos or both)."""
    kind = words(t["media"] for t in tasks)
    if study.mode == "trainer":
        scale = "".join(f"<li><b>{s}</b>: {e(SCORE_WORDS[s])} (at rest: {e(REST_SCORE_WORDS[s])})</li>" for s in SCORES)
        return (f"<h2>How to score</h2><p>Each {kind['item']} shows one Yanagihara item of a synthetic person with a "
                f"facial palsy. Score the palsied side's movement for that item:</p><ul>{scale}</ul>"
                f"<p>Your scores are compared with the supervisor's reference scores "
                f"({'after each ' + kind['item'] if study.meta['feedback'] == 'image' else 'when you finish'}).</p>")
    media, sources = [t["media"] for t in tasks], [t["source_media"] for t in tasks]
    parts = []
    for c in CRITERIA:
        q, n = worded(c, media, sources), sum(t["criterion"] == c for t in tasks)
        where = "beside the patient's face (the same face crop), for the same Yanagihara item" if q["with_source"] \
            else f"alone, before any patient's {words(sources)['source']} is shown"
        parts.append(f"<li><b>{e(q['title'])}</b> ({n} questions): the generated face {where}. {e(q['question'])} "
                     f"<br>1 = {e(q['low'])}, 5 = {e(q['high'])}; 2 to 4 lie between.</li>")
    return ("<h2>How it works</h2><p>The questions come in parts, in this order; a part opens when the one "
            f"before it is answered.</p><ol>{''.join(parts)}</ol>"
            "<p>Answer with the buttons or the keys 1 to 5; the arrow keys move without answering.</p>")
