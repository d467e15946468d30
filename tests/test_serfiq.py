"""SER-FIQ: the ONNX split, determinism, and the formula recomputed independently."""
import numpy as np
import onnx
import onnxruntime
import pytest
from real_faces import photos
from tiny_arcface import write_tiny_arcface

from palsysim.base.errors import InputError
from palsysim.identity import arcface as arc
from palsysim.measure import serfiq


@pytest.fixture(scope="module")
def arcface(module_tmp):
    return write_tiny_arcface(str(module_tmp("insightface") / "tiny_arcface.onnx"), seed=3)


@pytest.fixture(scope="module")
def crops():
    faces = photos()
    return arc.aligned_crops([faces["astronaut"], faces["grace_hopper"], faces["tom_hanks"]])


def test_split_is_cut_before_the_last_fully_connected_layer(arcface):
    head, tail, cut = serfiq.split_model(arcface)
    assert [n.op_type for n in tail.graph.node] == ["Gemm", "BatchNormalization"]
    assert head.graph.node[-1].op_type == "Flatten" and head.graph.output[0].name == cut


def test_split_head_and_tail_reproduce_the_full_embedding_without_dropout(arcface, crops):
    model = arc.load_model(arcface)
    split = serfiq.load_split(arcface)
    b = arc.blob(model, crops)
    full = onnxruntime.InferenceSession(arcface, providers=["CPUExecutionProvider"]).run(None, {"input.1": b})[0]
    feats = split.features(b)
    assert feats.shape == (3, 16 * 7 * 7)
    np.testing.assert_array_equal(split.embed(feats), full)
    # and insightface's own path gives the same embedding, normalised
    np.testing.assert_allclose(arc.embed_aligned(model, crops),
                               full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6)


def test_identical_inputs_give_identical_scores_with_a_seed(arcface, crops):
    a = serfiq.quality_aligned([crops[0], crops[1], crops[0]], arcface, seed=7)
    assert a[0] == a[2]  # same face, same seed, wherever it sits in the batch
    assert serfiq.quality_aligned(crops[:2], arcface, seed=7) == a[:2]
    other_seed = serfiq.quality_aligned(crops[:1], arcface, seed=8)[0]
    assert other_seed != a[0]  # the passes really are stochastic
    assert all(0.0 < s <= 1.0 for s in a)


def test_score_matches_the_formula_on_the_same_stochastic_embeddings(arcface, crops):
    scores, embs = serfiq.quality_aligned(crops, arcface, passes=100, dropout=0.5, seed=1,
                                          return_embeddings=True)
    for s, e in zip(scores, embs):
        assert e.shape == (100, 512)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-9)
        # independent: explicit loop over the pairs t < u
        d = [np.sqrt(((e[t] - e[u]) ** 2).sum()) for t in range(100) for u in range(t + 1, 100)]
        assert len(d) == 4950
        expected = 2.0 * (1.0 / (1.0 + np.exp(np.mean(d))))  # 2 * sigmoid(-mean distance)
        assert s == pytest.approx(expected, abs=1e-6)


def test_dropout_masks_are_inverted_dropout_at_the_given_rate(arcface, crops):
    """Pass t's tail input is f * mask / (1 - p) with about a fraction p of f dropped."""
    split = serfiq.load_split(arcface)
    f = split.features(arc.blob(arc.load_model(arcface), crops[:1]))[0]
    rng = np.random.default_rng(5)
    e = serfiq.stochastic_embeddings(split, f, passes=200, dropout=0.5, rng=rng)
    keep = np.random.default_rng(5).random((200, f.size)) >= 0.5
    assert 0.45 < keep.mean() < 0.55
    direct = split.embed((f * keep / 0.5).astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(e, direct / np.linalg.norm(direct, axis=1, keepdims=True), atol=1e-6)


def test_a_model_without_a_fully_connected_layer_is_refused(tmp_path):
    import torch
    path = str(tmp_path / "convonly.onnx")
    torch.onnx.export(torch.nn.Sequential(torch.nn.Conv2d(3, 512, 112), torch.nn.Flatten()),
                      torch.zeros(1, 3, 112, 112), path, dynamo=False)
    with pytest.raises(InputError, match="no fully connected layer"):
        serfiq.cut_point(onnx.load(path))


def test_bad_settings_are_refused(arcface, crops):
    with pytest.raises(InputError, match="at least 2 stochastic passes"):
        serfiq.quality_aligned(crops[:1], arcface, passes=1)
    with pytest.raises(InputError, match="dropout must be between 0 and 1"):
        serfiq.quality_aligned(crops[:1], arcface, dropout=1.0)


def test_fixed_batch_export_gives_the_same_scores(tmp_path, arcface, crops):
    fixed = write_tiny_arcface(str(tmp_path / "fixed.onnx"), seed=3, dynamic_batch=False)
    assert isinstance(serfiq.load_split(fixed).head_batch, int)
    np.testing.assert_allclose(serfiq.quality_aligned(crops, fixed, passes=10),
                               serfiq.quality_aligned(crops, arcface, passes=10), atol=1e-6)


def test_calibrated_score_is_the_reference_implementations():
    assert serfiq.calibrated(0.88) == pytest.approx(0.5)
    assert serfiq.calibrated(0.88 + 0.01) == pytest.approx(1 / (1 + np.exp(-1.3)))
    # a raw spread of 0.008 becomes 0.25 on the calibrated scale (Table II's 0.35-0.60 fits this form)
    assert serfiq.calibrated(0.884) - serfiq.calibrated(0.876) == pytest.approx(0.2543, abs=1e-3)
