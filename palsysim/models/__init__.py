"""`python -m palsysim models`: the status of every model file and downloads that run only on an explicit
`--fetch`. The catalog itself (what the pack can use, where it goes, its pinned digest) is
base.model_files, which the nodes read for their missing-model messages without loading download code."""
