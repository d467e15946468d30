"""SER-FIQ face image quality (Terhoerst et al., CVPR 2020) from the same ArcFace ONNX.

The ArcFace graph is cut just before its last fully connected layer (onnx.utils.Extractor): the
head maps an aligned face to the flattened feature f (N, F), the tail (that layer and whatever
follows, e.g. a BatchNorm) maps f to the embedding. Quality is how stable the embedding stays when
random halves of f are dropped:

    x_t = f * m_t / (1 - p),  m_t ~ Bernoulli(1 - p) per element,  t = 1..T   (T = 100, p = 0.5)
    e_t = tail(x_t) / ||tail(x_t)||
    d   = mean over the T(T-1)/2 pairs t < u of ||e_t - e_u||          (Euclidean)
    q   = 2 * sigmoid(-d) = 2 / (1 + exp(d))

q lies in (0, 1]; 1 means every dropout pass gave the same embedding. The reference implementation
returns the calibrated score 1 / (1 + exp(-ALPHA (q - R))) (ALPHA 130, R 0.88; `calibrated`), the
scale of the paper's Table II (0.35-0.60); on the raw q every method falls within 0.008 of the others.
"""

import numpy as np

from ..base.errors import InputError
from ..identity import arcface

PASSES = 100
DROPOUT = 0.5
ALPHA, R = 130.0, 0.88  # the reference implementation's calibration

_splits = {}


def cut_point(model):
    """onnx ModelProto -> name of the tensor entering its last fully connected layer (Gemm or MatMul)."""
    weights = {t.name for t in model.graph.initializer}
    for node in reversed(model.graph.node):  # ONNX keeps nodes in topological order
        if node.op_type in ("Gemm", "MatMul"):
            data = [i for i in node.input[:2] if i not in weights]
            if len(data) == 1:
                return data[0]
    raise InputError("this ONNX model has no fully connected layer (Gemm or MatMul) to split "
                     "SER-FIQ at; use an ArcFace recognition model")


def _with_dynamic_batch(model):
    """Mark the first dimension of every graph input/output dynamic (the tail runs T passes at once)."""
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"
    del model.graph.value_info[:]  # stale intermediate shapes would pin the batch size again
    return model


def split_model(model_path):
    """ONNX file -> (head, tail, cut) onnx ModelProtos and the cut tensor's name."""
    import onnx
    from onnx.utils import Extractor
    model = onnx.load(model_path)
    cut = cut_point(model)
    # Extractor needs shapes of the tensors it cuts at; infer them where the file lacks them.
    model = onnx.shape_inference.infer_shapes(model)
    ex = Extractor(model)
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    head = ex.extract_model(inputs, [cut])
    tail = _with_dynamic_batch(ex.extract_model([cut], outputs))
    return head, tail, cut


class Split:
    """onnxruntime sessions of one ArcFace ONNX's head and tail (see split_model)."""

    def __init__(self, model_path):
        import onnxruntime
        head, tail, self.cut = split_model(model_path)
        opts = dict(providers=arcface.providers())
        self.head = onnxruntime.InferenceSession(head.SerializeToString(), **opts)
        self.tail = onnxruntime.InferenceSession(tail.SerializeToString(), **opts)
        self.head_batch = self.head.get_inputs()[0].shape[0]

    def features(self, blob):
        """(N, 3, S, S) ArcFace input blob -> (N, F) flattened features before the last FC layer."""
        name = self.head.get_inputs()[0].name
        if isinstance(self.head_batch, int):  # a fixed-batch export takes one face at a time
            out = [self.head.run([self.cut], {name: blob[i:i + 1]})[0] for i in range(len(blob))]
            return np.concatenate(out).reshape(len(blob), -1)
        return self.head.run([self.cut], {name: blob})[0].reshape(len(blob), -1)

    def embed(self, features):
        """(T, F) features -> (T, D) embeddings through the tail, unnormalised."""
        name = self.tail.get_inputs()[0].name
        return self.tail.run(None, {name: np.ascontiguousarray(features, dtype=np.float32)})[0].reshape(len(features), -1)


def load_split(model_path):
    """The process-wide Split of a model file (built once per file)."""
    arcface.load_model(model_path)  # same checks and messages as the identity model
    return arcface.per_file(_splits, model_path, Split)


def stochastic_embeddings(split, feature, passes=PASSES, dropout=DROPOUT, rng=None):
    """(F,) feature -> (passes, D) unit embeddings, each from an independent inverted-dropout mask."""
    rng = np.random.default_rng(0) if rng is None else rng
    feature = np.asarray(feature, dtype=np.float32).reshape(1, -1)
    keep = rng.random((passes, feature.shape[1])) >= dropout
    x = feature * keep / np.float32(1.0 - dropout)
    e = split.embed(x.astype(np.float32)).astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def score(unit_embeddings):
    """(T, D) unit embeddings -> 2 * sigmoid(-mean pairwise Euclidean distance)."""
    e = np.asarray(unit_embeddings, dtype=np.float64)
    g = e @ e.T
    sq = np.clip(np.diag(g)[:, None] + np.diag(g)[None, :] - 2.0 * g, 0.0, None)
    d = np.sqrt(sq[np.triu_indices(len(e), k=1)]).mean()
    return float(2.0 / (1.0 + np.exp(d)))


def calibrated(q):
    """Raw SER-FIQ q -> the reference implementation's calibrated score 1 / (1 + exp(-130 (q - 0.88)))."""
    return float(1.0 / (1.0 + np.exp(-ALPHA * (float(q) - R))))


def quality_aligned(crops, model_path, passes=PASSES, dropout=DROPOUT, seed=0, return_embeddings=False):
    """list of (112, 112, 3) uint8 RGB aligned crops -> list of SER-FIQ scores (see module doc).

    Every image uses a fresh generator seeded with seed, so identical faces score identically
    wherever they sit in a batch. return_embeddings: also return each image's (T, D) embeddings.
    """
    if passes < 2:
        raise InputError(f"SER-FIQ needs at least 2 stochastic passes (got {passes})")
    if not 0.0 < dropout < 1.0:
        raise InputError(f"SER-FIQ dropout must be between 0 and 1 (got {dropout})")
    split = load_split(model_path)
    feats = split.features(arcface.blob(arcface.load_model(model_path), crops))
    scores, embs = [], []
    for f in feats:
        e = stochastic_embeddings(split, f, passes, dropout, np.random.default_rng(seed))
        scores.append(score(e))
        embs.append(e)
    return (scores, embs) if return_embeddings else scores


def quality(images, model_path, passes=PASSES, dropout=DROPOUT, seed=0, landmarks=None, what="image"):
    """list of photos -> list of SER-FIQ scores, each face aligned by its MediaPipe landmarks."""
    size = arcface.load_model(model_path).input_size[0]
    crops = arcface.aligned_crops(images, size, landmarks, what)
    return quality_aligned(crops, model_path, passes, dropout, seed)
