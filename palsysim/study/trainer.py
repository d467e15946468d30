"""What a trainee sees of the reference: the verdict on one score, and their results once finished."""
import math

from ..base.vocabulary import ITEM_TITLES
from .pages import e, page, shown
from .questions import words


def verdict(score, reference):
    diff = score - reference
    if diff == 0:
        return '<span class="good">agrees with the reference</span>'
    return f'<span class="bad">{abs(diff)} points {"above" if diff > 0 else "below"} the reference</span>'


def trainee_summary(study, rater):
    from .stats import trainee_items, trainee_totals, trainer_answers
    mine = [r for r in trainer_answers(study) if r["trainee"] == rater["label"]]
    kappa = {r["item"]: r for r in trainee_items(mine)}
    rows = "".join(f'<tr><td>{shown(r["image"], r["media"], "scored " + words([r["media"]])["item"], 96)}</td>'
                   f'<td>{e(ITEM_TITLES[r["item"]])}</td><td>{r["score"]}</td><td>{r["reference"]}</td>'
                   f'<td>{verdict(r["score"], r["reference"])}</td></tr>' for r in mine)
    each = words(r["media"] for r in mine)["item"]
    items = "".join(f"<tr><td>{e(ITEM_TITLES.get(i, 'all items together'))}</td><td>{k['n']}</td>"
                    f"<td>{_kappa(k['kappa'])}</td><td>{100 * k['exact']:.0f}%</td></tr>"
                    for i, k in kappa.items())
    totals = "".join(f"<tr><td>{e(t['patient'])}, synthetic person {t['case']}</td><td>{t['items']}</td>"
                     f"<td>{t['score']}</td><td>{t['reference']}</td><td>{t['difference']:+d}</td></tr>"
                     for t in trainee_totals(mine))
    return page("Your results", f"<h1>Your results, {e(rater['label'])}</h1>"
                                "<p>Agreement with the reference: quadratic-weighted kappa (1 = perfect, 0 = chance; "
                                "n/a when it is undefined, e.g. one and the same score throughout).</p>"
                                "<table><tr><th>item</th><th>scored</th><th>kappa</th><th>exact</th></tr>"
                                f"{items}</table>"
                                "<h2>Total scores per synthetic person (over the items you scored)</h2>"
                                "<table><tr><th>synthetic person</th><th>items</th><th>your total</th>"
                                "<th>reference total</th><th>difference</th>"
                                f"</tr>{totals}</table><h2>Each {each}</h2><table><tr><th></th><th>item</th>"
                                f"<th>yours</th><th>reference</th><th></th></tr>{rows}</table>")


def _kappa(k):
    return "n/a" if math.isnan(k) else f"{k:.2f}"
