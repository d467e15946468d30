"""The rating study (the paper's Table I) and the Yanagihara trainer: a small local web app.

`python -m palsysim study create|invite|serve|results` (study/cli.py). A study is one folder:

  STUDY/study.sqlite        methods, patients ("patient k"), images by opaque id, raters (token hashes),
                            each rater's recorded task order, answers, reference Yanagihara scores (WAL)
  STUDY/images/<id>.png     the study's own metadata-free copies of the images, named by opaque id
  STUDY/images/<id>.mp4|webm  a video item's copies (H.264 and VP9, the same frames; media.py)
  STUDY/.palsysim-study     the mark of a folder the study commands made (folders.py): they delete or
                            overwrite nothing in a folder without it

Inputs, as the runner and the experiment write them:
  --images DIR     DIR/<method>/<patient>/<expression>/*.png or *.mp4  (one runner tree per method)
  --patients DIR   DIR/<patient>/<expression>.png|jpg|mp4 or <expression>/*  (the source photos and videos)
  --from EXP       EXP/generated/<method>/... and EXP/prepared/photos/... (palsysim/experiment's layout)
No patient folder or file name reaches the database, a page or an export: patients become
"patient 1..K" in natural sort order of their folder names (patient_2 before patient_10).
"""
