#!/usr/bin/python3
"""Compare the C++ `mole` CLI's logits with the float64 NumPy reference (mole_ref.py).

Usage:
    /usr/bin/python3 tests/reference/test_reference.py --mole build/mole
    /usr/bin/python3 tests/reference/test_reference.py --self-test     # no mole needed

--self-test checks the reference itself:
  (a) hand: tiny models written here with NumPy whose logits are also computed
      step by step with plain Python loops (no NumPy linear algebra);
  (b) consistency: a training-form model and the inference-form model whose
      lookup table is built here in float64 give the same logits; plus the
      safetensors reader on F16/BF16/sharded files.

The full run does the self-test and then, for each case, synthesises a random
checkpoint with `mole synth`, runs `mole logits` and compares with the reference:
relative L2 error over all logits < 1e-5, and equal argmax wherever the
reference's top-2 margin exceeds 1e-3. It also checks `mole convert`, and a table past 4 GiB
(table_past_4gib).

Prints "ok NAME rel_err=..." or "FAIL NAME ..." per case, then "P passed, F failed";
exit code 1 if anything failed.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mole_ref  # noqa: E402

REL_TOL = 1e-5          # mole vs reference, exact-precision paths
F16_TABLE_TOL = 2e-2    # f16-rounded lookup table vs float64 table
MARGIN = 1e-3           # argmax must agree where the reference's top-2 gap exceeds this
SELF_TOL = 1e-10        # reference vs hand computation / vs itself
SUBPROCESS_TIMEOUT = 600


class CaseFailure(Exception):
    """A check failed; the message is printed after FAIL NAME."""


# ----------------------------------------------------------------------------
# writing checkpoints with NumPy
# ----------------------------------------------------------------------------

def f32_to_bf16_bits(a):
    """float array -> bfloat16 bit patterns (uint16), round to nearest even."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).astype(np.uint16)


def encode(array, dtype_name):
    """(bytes, shape) of `array` stored as dtype_name (F64, F32, F16 or BF16)."""
    a = np.asarray(array, dtype=np.float64)
    if dtype_name == "F64":
        data = a.astype("<f8")
    elif dtype_name == "F32":
        data = a.astype("<f4")
    elif dtype_name == "F16":
        data = a.astype("<f2")
    elif dtype_name == "BF16":
        data = f32_to_bf16_bits(a).astype("<u2")
    else:
        raise ValueError(dtype_name)
    return np.ascontiguousarray(data).tobytes(), list(a.shape)


def write_safetensors(path, tensors, dtype_name="F32"):
    """Write {name: array} to a .safetensors file. dtype_name is a string for all
    tensors or a dict name -> dtype string."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        dt = dtype_name[name] if isinstance(dtype_name, dict) else dtype_name
        data, shape = encode(array, dt)
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # pad to 8 bytes, as the safetensors library does
    with open(path, "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for data in blobs:
            f.write(data)


def write_checkpoint(directory, config, tensors, dtype_name="F32"):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(directory, "model.safetensors"), tensors, dtype_name)


def base_config(**overrides):
    cfg = {
        "architectures": ["MoLEForCausalLM"],
        "vocab_size": 11, "hidden_size": 8, "intermediate_size": 12,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": None, "tie_word_embeddings": False, "num_experts": 3,
    }
    cfg.update(overrides)
    return cfg


def random_weights(cfg, form, rng):
    """Random float64 weights, already rounded to float32, for form "train" or "dense".

    Any other form gets the training-form weights; build_table() turns them into
    the inference form."""
    V, D, F = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads") or H
    hd = D // H
    E = cfg.get("num_experts") or 0

    def mat(rows, cols, scale=None):
        s = scale if scale is not None else 1.0 / math.sqrt(cols)
        return (rng.standard_normal((rows, cols)) * s).astype(np.float32).astype(np.float64)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32).astype(np.float64)

    w = {"model.embed_tokens.weight": mat(V, D, 1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(D)
        w[p + "self_attn.q_proj.weight"] = mat(H * hd, D, 1.0)   # large: non-uniform attention
        w[p + "self_attn.k_proj.weight"] = mat(KVH * hd, D, 1.0)
        w[p + "self_attn.v_proj.weight"] = mat(KVH * hd, D)
        w[p + "self_attn.o_proj.weight"] = mat(D, H * hd)
        w[p + "post_attention_layernorm.weight"] = norm(D)
        w[p + "mlp.up_proj.weight"] = mat(F, D)
        w[p + "mlp.down_proj.weight"] = mat(D, F)
        if form != "dense":
            w[p + "router.weight"] = mat(E, D, 1.0)
            w[p + "expert_layernorm.weight"] = norm(D)
            for e in range(E):
                w[p + f"experts.{e}.up_proj.weight"] = mat(F, D)
                w[p + f"experts.{e}.down_proj.weight"] = mat(D, F)
    w["model.norm.weight"] = norm(D)
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = mat(V, D)
    return w


def build_table(cfg, w):
    """Inference form from training-form weights, in float64, written out here
    independently of mole_ref: table[id] = concat over (l, e) of expert e of layer l
    applied to rmsnorm(embed[id], expert_layernorm_l). Returns new weight dict."""
    V, D = cfg["vocab_size"], cfg["hidden_size"]
    L, E = cfg["num_hidden_layers"], cfg["num_experts"]
    eps = cfg["rms_norm_eps"]
    emb = w["model.embed_tokens.weight"]
    erf = np.frompyfunc(math.erf, 1, 1)
    table = np.zeros((V, L, E, D))
    for l in range(L):
        p = f"model.layers.{l}."
        g = w[p + "expert_layernorm.weight"]
        u = emb / np.sqrt((emb ** 2).mean(axis=1, keepdims=True) + eps) * g
        for e in range(E):
            pre = np.einsum("vd,fd->vf", u, w[p + f"experts.{e}.up_proj.weight"])
            act = pre * 0.5 * (1.0 + erf(pre / math.sqrt(2.0)).astype(np.float64))
            table[:, l, e, :] = np.einsum("vf,df->vd", act, w[p + f"experts.{e}.down_proj.weight"])
    out = {k: v for k, v in w.items() if ".experts." not in k and "expert_layernorm" not in k}
    out["model.moe_table.weight"] = table.reshape(V, L * E * D)
    return out


# ----------------------------------------------------------------------------
# the hand computation: plain Python loops, no NumPy linear algebra
# ----------------------------------------------------------------------------

def hand_logits(cfg, w, ids):
    """Logits as a list of lists, computed token by token with Python loops.
    w: {name: numpy array}; everything is converted to nested Python lists first."""
    W = {k: v.tolist() for k, v in w.items()}
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads") or H
    hd = D // H
    half = hd // 2
    L = cfg["num_hidden_layers"]
    E = cfg.get("num_experts") or 0
    eps = cfg["rms_norm_eps"]
    T = len(ids)

    def rms(v, g):
        ms = 0.0
        for t in v:
            ms += t * t
        ms /= len(v)
        s = 1.0 / math.sqrt(ms + eps)
        return [g[i] * v[i] * s for i in range(len(v))]

    def linear(M, v):  # M is (out, in)
        res = []
        for row in M:
            acc = 0.0
            for i in range(len(v)):
                acc += row[i] * v[i]
            res.append(acc)
        return res

    def gelu(t):
        return 0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0)))

    def mlp(v, up, down):
        return linear(down, [gelu(t) for t in linear(up, v)])

    # RoPE parameters
    base = cfg.get("rope_theta") or 10000.0
    pos_scale = 1.0
    scaling = cfg.get("rope_scaling")
    if scaling:
        kind = scaling.get("type", scaling.get("rope_type"))
        factor = scaling["factor"]
        if kind == "linear":
            pos_scale = factor
        elif kind == "dynamic":
            mpe = cfg["max_position_embeddings"]
            if T > mpe:
                base = base * ((factor * T / mpe) - (factor - 1)) ** (hd / (hd - 2))

    def rope(u, pos):
        out = []
        for i in range(hd):
            j = i % half
            theta = (pos / pos_scale) * base ** (-(2.0 * j) / hd)
            partner = -u[i + half] if i < half else u[i - half]
            out.append(u[i] * math.cos(theta) + partner * math.sin(theta))
        return out

    xs = [list(W["model.embed_tokens.weight"][i]) for i in ids]
    for l in range(L):
        p = f"model.layers.{l}."
        qs, ks, vs = [], [], []
        for t in range(T):
            a = rms(xs[t], W[p + "input_layernorm.weight"])
            q = linear(W[p + "self_attn.q_proj.weight"], a)
            k = linear(W[p + "self_attn.k_proj.weight"], a)
            v = linear(W[p + "self_attn.v_proj.weight"], a)
            qs.append([rope(q[h * hd:(h + 1) * hd], t) for h in range(H)])
            ks.append([rope(k[h * hd:(h + 1) * hd], t) for h in range(KVH)])
            vs.append([v[h * hd:(h + 1) * hd] for h in range(KVH)])
        new_xs = []
        for t in range(T):
            concat = []
            for h in range(H):
                g = h // (H // KVH)
                scores = []
                for s in range(t + 1):  # causal: keys 0..t
                    dot = 0.0
                    for i in range(hd):
                        dot += qs[t][h][i] * ks[s][g][i]
                    scores.append(dot / math.sqrt(hd))
                m = max(scores)
                ex = [math.exp(sc - m) for sc in scores]
                z = sum(ex)
                head = [0.0] * hd
                for s in range(t + 1):
                    for i in range(hd):
                        head[i] += ex[s] / z * vs[s][g][i]
                concat.extend(head)
            attn = linear(W[p + "self_attn.o_proj.weight"], concat)
            hvec = [xs[t][i] + attn[i] for i in range(D)]
            y = rms(hvec, W[p + "post_attention_layernorm.weight"])
            m_out = mlp(y, W[p + "mlp.up_proj.weight"], W[p + "mlp.down_proj.weight"])
            xnew = [hvec[i] + m_out[i] for i in range(D)]
            if E:
                logits_r = linear(W[p + "router.weight"], y)
                mx = max(logits_r)
                ex = [math.exp(z - mx) for z in logits_r]
                r = [z / sum(ex) for z in ex]
                tok = ids[t]
                for e in range(E):
                    if "model.moe_table.weight" in W:
                        row = W["model.moe_table.weight"][tok]
                        start = (l * E + e) * D
                        out_e = row[start:start + D]
                    else:
                        u = rms(W["model.embed_tokens.weight"][tok], W[p + "expert_layernorm.weight"])
                        out_e = mlp(u, W[p + f"experts.{e}.up_proj.weight"],
                                    W[p + f"experts.{e}.down_proj.weight"])
                    for i in range(D):
                        xnew[i] += r[e] * out_e[i]
            new_xs.append(xnew)
        xs = new_xs

    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return [linear(head, rms(x, W["model.norm.weight"])) for x in xs]


# ----------------------------------------------------------------------------
# comparisons
# ----------------------------------------------------------------------------

def rel_err(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise CaseFailure(f"shape {got.shape} != reference shape {ref.shape}")
    if not np.all(np.isfinite(got)):
        raise CaseFailure("non-finite logits")
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def argmax_mismatches(got, ref):
    """Positions whose argmax differs although the reference's top-2 margin > MARGIN."""
    top2 = np.sort(ref, axis=-1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > MARGIN
    differ = np.argmax(got, axis=-1) != np.argmax(ref, axis=-1)
    return np.nonzero(decisive & differ)[0].tolist()


def compare(pairs, tol, what="mole vs ref"):
    """pairs: list of (got, ref) logits arrays, one per sequence. Returns rel_err over all."""
    got = np.concatenate([g for g, _ in pairs], axis=0)
    ref = np.concatenate([r for _, r in pairs], axis=0)
    err = rel_err(got, ref)
    if not err < tol:
        raise CaseFailure(f"{what}: rel_err={err:.3e} >= {tol:g}")
    for k, (g, r) in enumerate(pairs):
        bad = argmax_mismatches(g, r)
        if bad:
            raise CaseFailure(f"{what}: sequence {k}: argmax differs at positions {bad[:10]}")
    return err


# ----------------------------------------------------------------------------
# self-test (no mole)
# ----------------------------------------------------------------------------

HAND_CASES = [
    # (name, config overrides, form, ids)
    ("hand_mole_train_gqa",   # the 1-layer, hidden 4, 2-head case
     dict(vocab_size=5, hidden_size=4, intermediate_size=6, num_hidden_layers=1,
          num_attention_heads=2, num_key_value_heads=1, num_experts=2), "train", [3, 1]),
    ("hand_dense_dynamic_tied",
     dict(vocab_size=7, hidden_size=8, intermediate_size=5, num_hidden_layers=2,
          num_attention_heads=2, num_key_value_heads=2, num_experts=0, rope_theta=100.0,
          max_position_embeddings=2, rope_scaling={"type": "dynamic", "factor": 2.0},
          tie_word_embeddings=True), "dense", [6, 0, 2]),
    ("hand_mole_infer_linear",
     dict(vocab_size=6, hidden_size=8, intermediate_size=4, num_hidden_layers=2,
          num_attention_heads=4, num_key_value_heads=2, num_experts=3,
          rope_scaling={"rope_type": "linear", "factor": 3.0}), "infer", [5, 5, 0, 2]),
]


def self_test_hand(tmp, seed=1):
    """(a) reference vs plain-loop hand computation on tiny models."""
    worst = 0.0
    for k, (name, overrides, form, ids) in enumerate(HAND_CASES):
        cfg = base_config(**overrides)
        rng = np.random.default_rng(seed + k)
        w = random_weights(cfg, form, rng)
        if form == "infer":  # the table is stored as F32 below: round it first
            w = {k: v.astype(np.float32).astype(np.float64) for k, v in build_table(cfg, w).items()}
        d = os.path.join(tmp, name)
        write_checkpoint(d, cfg, w, "F32")
        ref = mole_ref.forward(d, ids)
        hand = np.array(hand_logits(cfg, w, ids))
        err = rel_err(ref, hand)
        if not err < SELF_TOL:
            raise CaseFailure(f"{name}: reference vs hand rel_err={err:.3e}")
        if mole_ref.Model(d).form != form:
            raise CaseFailure(f"{name}: form detected as {mole_ref.Model(d).form}, want {form}")
        worst = max(worst, err)
    return worst


def self_test_consistency(tmp, seed=7):
    """(b) train form == inference form (table built here in float64); dense has
    no expert term; reader handles F16/BF16 and sharded checkpoints."""
    cfg = base_config(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, num_experts=4)
    rng = np.random.default_rng(seed)
    w_train = random_weights(cfg, "train", rng)
    w_infer = build_table(cfg, w_train)
    ids_list = [[int(i) for i in rng.integers(0, 40, n)] for n in (1, 9, 30)]

    d_train, d_infer = os.path.join(tmp, "cons_train"), os.path.join(tmp, "cons_infer")
    write_checkpoint(d_train, cfg, w_train, "F32")
    write_checkpoint(d_infer, cfg, w_infer, "F64")
    m_train, m_infer = mole_ref.Model(d_train), mole_ref.Model(d_infer)
    if (m_train.form, m_infer.form) != ("train", "infer"):
        raise CaseFailure(f"forms detected as {m_train.form}/{m_infer.form}")
    worst = 0.0
    for ids in ids_list:
        a, b = m_train.forward(ids), m_infer.forward(ids)
        err = rel_err(b, a)
        if not err < 1e-12:
            raise CaseFailure(f"train vs infer form rel_err={err:.3e} for {len(ids)} tokens")
        worst = max(worst, err)

    # Causality: logits at position t must not depend on later tokens.
    ids = ids_list[2]
    full, prefix = m_train.forward(ids), m_train.forward(ids[:12])
    if rel_err(full[:12], prefix) > 1e-12:
        raise CaseFailure("logits of a prefix change when tokens are appended (not causal)")

    # The expert term matters: dropping it (a dense model with the same other weights) changes logits.
    cfg_dense = dict(cfg, num_experts=0)
    w_dense = {k: v for k, v in w_train.items()
               if "expert" not in k and "router" not in k}
    d_dense = os.path.join(tmp, "cons_dense")
    write_checkpoint(d_dense, cfg_dense, w_dense, "F32")
    if rel_err(mole_ref.forward(d_dense, ids), full) < 1e-3:
        raise CaseFailure("expert term has no visible effect")

    # Reader: 16-bit dtypes widen exactly; values chosen to be representable in both.
    vals = np.array([[1.0, -2.5, 0.15625, 0.0], [-0.0, 3.0, -1024.0, 0.375]])
    d_dt = os.path.join(tmp, "dtypes")
    os.makedirs(d_dt)
    write_safetensors(os.path.join(d_dt, "model.safetensors"),
                      {"a16": vals, "abf": vals, "a32": vals, "big_bf": np.array([1.5e30, -3.0e-30])},
                      {"a16": "F16", "abf": "BF16", "a32": "F32", "big_bf": "BF16"})
    ck = mole_ref.Checkpoint(d_dt)
    for name in ("a16", "abf", "a32"):
        if not np.array_equal(ck.get(name), vals):
            raise CaseFailure(f"reader: {name} ({ck.dtype(name)}) decoded wrongly: {ck.get(name)}")
    bf = ck.get("big_bf")
    if not np.allclose(bf, [1.5e30, -3.0e-30], rtol=2 ** -8):
        raise CaseFailure(f"reader: BF16 decoded wrongly: {bf}")
    if not np.array_equal(ck.rows("abf", [1]), vals[1:2]):
        raise CaseFailure("reader: rows() of BF16 wrong")

    # Reader: a sharded checkpoint equals the single-file one.
    d_sh = os.path.join(tmp, "cons_sharded")
    os.makedirs(d_sh)
    names = list(w_train)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for fname, part in shards.items():
        write_safetensors(os.path.join(d_sh, fname), {n: w_train[n] for n in part}, "F32")
        weight_map.update({n: fname for n in part})
    with open(os.path.join(d_sh, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(d_sh, "config.json"), "w") as f:
        json.dump(cfg, f)
    if rel_err(mole_ref.forward(d_sh, ids), full) != 0.0:
        raise CaseFailure("sharded checkpoint gives different logits")

    # Mixed storage dtypes: weights stored as BF16 and F16 match the reference on their rounded values.
    for dt in ("F16", "BF16"):
        d16 = os.path.join(tmp, "cons_" + dt)
        write_checkpoint(d16, cfg, w_train, dt)
        if dt == "F16":
            rounded = {k: v.astype(np.float16).astype(np.float64) for k, v in w_train.items()}
        else:
            rounded = {k: mole_ref.bf16_bits_to_float32(f32_to_bf16_bits(v)).astype(np.float64)
                       for k, v in w_train.items()}
        d_r = os.path.join(tmp, "cons_rounded_" + dt)
        write_checkpoint(d_r, cfg, rounded, "F64")
        if rel_err(mole_ref.forward(d16, ids), mole_ref.forward(d_r, ids)) != 0.0:
            raise CaseFailure(f"{dt} checkpoint differs from its float64-rounded twin")
    return worst


# ----------------------------------------------------------------------------
# mole cases
# ----------------------------------------------------------------------------

class Mole:
    """Runs the mole CLI."""

    def __init__(self, path):
        self.path = path

    def run(self, *args):
        cmd = [self.path] + [str(a) for a in args]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CaseFailure(f"timeout: {' '.join(cmd)}")
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise CaseFailure(f"exit {p.returncode}: {' '.join(cmd)}: {' | '.join(err)}")
        return p.stdout.decode()

    def synth(self, out, form, dtype, seed, settings):
        args = ["synth", "--preset", "tiny", "-o", out, "--form", form,
                "--dtype", dtype, "--seed", seed]
        if settings:
            args += ["--set", json.dumps(settings)]
        self.run(*args)

    def logits(self, model_dir, ids, lut_dtype=None):
        args = ["logits", "-m", model_dir, "--ids", ",".join(map(str, ids)), "--json"]
        if lut_dtype:
            args += ["--lut-dtype", lut_dtype]
        text = self.run(*args)
        try:
            return np.array(json.loads(text)["logits"], dtype=np.float64)
        except (ValueError, KeyError) as e:
            raise CaseFailure(f"cannot parse `mole logits` output ({e}): {text[:200]!r}")

    def convert(self, src, out, dtype=None):
        args = ["convert", "-m", src, "-o", out]
        if dtype:
            args += ["--dtype", dtype]
        self.run(*args)


def make_id_lists(vocab, lengths, seed):
    """Random ids per length; the 7-token one (if any) also contains 0 and vocab-1."""
    rng = np.random.default_rng(10_000 + seed)
    out = []
    for n in lengths:
        ids = [int(i) for i in rng.integers(0, vocab, n)]
        if n >= 3:
            ids[1], ids[-1] = 0, vocab - 1
        out.append(ids)
    return out


SMALL = {"vocab_size": 384}

# (name, form, dtype, settings merged into the tiny preset's config, sequence lengths)
CASES = [
    ("mha_f32_train", "train", "f32", dict(SMALL, num_key_value_heads=4), (1, 7, 40)),
    ("gqa_f32_infer", "infer", "f32", dict(SMALL, num_key_value_heads=2), (1, 7, 40)),
    ("mqa_f32_dense", "dense", "f32", dict(SMALL, num_key_value_heads=1), (1, 7, 40)),
    ("gqa_f16_train", "train", "f16", dict(SMALL, num_key_value_heads=2), (1, 7, 40)),
    ("mha_f16_infer", "infer", "f16", dict(SMALL, num_key_value_heads=4), (1, 7, 40)),
    ("gqa_f16_dense", "dense", "f16", dict(SMALL, num_key_value_heads=2), (1, 7, 40)),
    ("mqa_bf16_train", "train", "bf16", dict(SMALL, num_key_value_heads=1), (1, 7, 40)),
    ("gqa_bf16_infer", "infer", "bf16", dict(SMALL, num_key_value_heads=2), (1, 7, 40)),
    ("mha_bf16_dense", "dense", "bf16", dict(SMALL, num_key_value_heads=4), (1, 7, 40)),
    ("rope_linear_train", "train", "f32",
     dict(SMALL, rope_scaling={"type": "linear", "factor": 2.0}), (1, 7, 40)),
    ("rope_linear_ropetype_dense", "dense", "bf16",
     dict(SMALL, rope_scaling={"rope_type": "linear", "factor": 2.0}), (7, 40)),
    # max_position_embeddings 16: 10 and 16 tokens stay on the plain branch, 17 and 40 take the NTK one.
    ("rope_dynamic_train", "train", "f32",
     dict(SMALL, rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=16),
     (10, 16, 17, 40)),
    ("rope_dynamic_mqa_infer", "infer", "f16",
     dict(SMALL, num_key_value_heads=1, rope_scaling={"type": "dynamic", "factor": 2.0},
          max_position_embeddings=16), (10, 40)),
    ("tied_embeddings_infer", "infer", "f32", dict(SMALL, tie_word_embeddings=True), (1, 7, 40)),
    ("tied_embeddings_dense", "dense", "f16", dict(SMALL, tie_word_embeddings=True), (7, 40)),
    ("rope_theta_500k_train", "train", "f32", dict(SMALL, rope_theta=500000.0), (1, 7, 40)),
    ("full_vocab_infer", "infer", "f16", {}, (1, 7, 40)),
]


def run_case(mole, tmp, index, name, form, dtype, settings, lengths):
    seed = 100 + 17 * index
    os.makedirs(tmp, exist_ok=True)
    d = os.path.join(tmp, name)
    mole.synth(d, form, dtype, seed, settings)
    model = mole_ref.Model(d)
    if model.form != form:
        raise CaseFailure(f"synth --form {form} wrote a {model.form}-form checkpoint")
    with open(os.path.join(d, "config.json")) as f:
        written = json.load(f)
    for key, value in settings.items():  # the case really exercises what its name says
        got = written.get(key)
        if isinstance(value, dict) and isinstance(got, dict):
            got = {k: got.get(k) for k in value}
        if got != value:
            raise CaseFailure(f"config.json {key}={written.get(key)!r}, --set asked {value!r}")
    lut = "f32" if form == "train" else None
    pairs = []
    for ids in make_id_lists(model.cfg.vocab_size, lengths, seed):
        pairs.append((mole.logits(d, ids, lut), model.forward(ids)))
    return compare(pairs, REL_TOL)


def tensor_summary(directory):
    ck = mole_ref.Checkpoint(directory)
    return {n: (ck.dtype(n), ck.shape(n)) for n in ck.names()}


def check_converted_layout(train_dir, conv_dir, table_dtype):
    """The converted checkpoint: same config, no expert tensors, a (V, L*E*D) table."""
    with open(os.path.join(train_dir, "config.json")) as f:
        c_train = json.load(f)
    with open(os.path.join(conv_dir, "config.json")) as f:
        c_conv = json.load(f)
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "num_experts"):
        if c_train.get(key) != c_conv.get(key):
            raise CaseFailure(f"converted config.json: {key}={c_conv.get(key)!r}, "
                              f"train has {c_train.get(key)!r}")
    tensors = tensor_summary(conv_dir)
    leftovers = [n for n in tensors if ".experts." in n or "expert_layernorm" in n]
    if leftovers:
        raise CaseFailure(f"converted checkpoint still has {leftovers[:4]}")
    cfg = mole_ref.Config(c_train)
    want = (cfg.vocab_size, cfg.num_layers * cfg.num_experts * cfg.hidden_size)
    if "model.moe_table.weight" not in tensors:
        raise CaseFailure("converted checkpoint has no model.moe_table.weight")
    dt, shape = tensors["model.moe_table.weight"]
    if shape != want or dt != table_dtype:
        raise CaseFailure(f"model.moe_table.weight is {dt}{list(shape)}, want {table_dtype}{list(want)}")
    train_tensors = tensor_summary(train_dir)
    for n in train_tensors:  # everything but the experts is carried over unchanged in shape
        if ".experts." in n or "expert_layernorm" in n:
            continue
        if n not in tensors or tensors[n][1] != train_tensors[n][1]:
            raise CaseFailure(f"converted checkpoint lost or reshaped {n}")


def run_convert_f32(mole, tmp):
    os.makedirs(tmp, exist_ok=True)
    train = os.path.join(tmp, "conv32_train")
    conv = os.path.join(tmp, "conv32_infer")
    mole.synth(train, "train", "f32", 901, dict(SMALL))
    mole.convert(train, conv, "f32")
    check_converted_layout(train, conv, "F32")
    ref = mole_ref.Model(train)
    pairs = [(mole.logits(conv, ids), ref.forward(ids)) for ids in make_id_lists(384, (1, 7, 40), 901)]
    return compare(pairs, REL_TOL, "converted(f32) vs train ref")


def run_convert_f16(mole, tmp):
    os.makedirs(tmp, exist_ok=True)
    train = os.path.join(tmp, "conv16_train")
    conv = os.path.join(tmp, "conv16_infer")
    mole.synth(train, "train", "f32", 902, dict(SMALL, num_key_value_heads=1))
    mole.convert(train, conv)  # default table dtype: f16
    check_converted_layout(train, conv, "F16")
    ref_train, ref_conv = mole_ref.Model(train), mole_ref.Model(conv)
    exact, loose, lut16 = [], [], []
    for ids in make_id_lists(384, (1, 7, 40), 902):
        got = mole.logits(conv, ids)
        exact.append((got, ref_conv.forward(ids)))
        loose.append((got, ref_train.forward(ids)))
        lut16.append((mole.logits(train, ids), loose[-1][1]))  # default --lut-dtype f16
    err = compare(exact, REL_TOL, "converted(f16) vs ref on converted dir")
    e2 = rel_err(np.concatenate([g for g, _ in loose]), np.concatenate([r for _, r in loose]))
    if not e2 < F16_TABLE_TOL:
        raise CaseFailure(f"converted(f16) vs train ref: rel_err={e2:.3e} >= {F16_TABLE_TOL}")
    e3 = rel_err(np.concatenate([g for g, _ in lut16]), np.concatenate([r for _, r in lut16]))
    if not e3 < F16_TABLE_TOL:
        raise CaseFailure(f"train dir with default f16 LUT vs train ref: rel_err={e3:.3e}")
    return err


# ----------------------------------------------------------------------------
# a table past 4 GiB
# ----------------------------------------------------------------------------

# Every published 410M MoLE's table is 9-40 GB, so rows lie past byte 2^31 and 2^32 of the table: those rows must be
# read from there, not from their offset modulo 2^32 (or past a signed 32-bit index). The table (40,000 rows of
# 4 layers x 64 experts x 256 dims in F16, 128 KiB a row: 4.9 GB) is written sparse: only the rows the case reads and
# the rows their offsets would read if cut to 32 bits (id - 32768 past 2^32, id - 16384 past 2^31) hold data, other
# values; the rest are the file system's holes, which read as zeros and take no disk. The weights are small
# (D = 256), so the case takes seconds. The CPU reference reads the rows from the file (--lut disk; its other
# placements would copy 4.9 GB); tests/test_backend_ops.cpp checks every GPU backend's placements against it on the
# same layout.
BIG_TABLE = base_config(vocab_size=40000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, num_experts=64)
BIG_IDS = [3, 32771, 16390, 39999, 32768, 24000, 7231, 0]  # offsets past 2^32: 32768 on; past 2^31: 16384 on


def write_sparse_table_checkpoint(directory, cfg, written_rows, seed):
    """An inference-form checkpoint (F16) whose moe_table holds data only in written_rows."""
    rng = np.random.default_rng(seed)
    V, D, L, E = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_experts"]
    w = random_weights(dict(cfg, num_experts=0), "dense", rng)
    for l in range(L):
        w[f"model.layers.{l}.router.weight"] = rng.standard_normal((E, D))
        for m in "qk":  # attention scores as at D = 64: random_weights' scale at D = 256 makes them ill-conditioned
            w[f"model.layers.{l}.self_attn.{m}_proj.weight"] *= 0.5
    row_bytes = L * E * D * 2
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, array in w.items():
        data, shape = encode(array, "F16")
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    offset += -offset % 64  # the table 64-byte aligned in the file, as the safetensors library leaves large tensors
    header["model.moe_table.weight"] = {"dtype": "F16", "shape": [V, L * E * D],
                                        "data_offsets": [offset, offset + V * row_bytes]}
    header_bytes = json.dumps(header).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % 64)
    data_start = 8 + len(header_bytes)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for data in blobs:
            f.write(data)
        f.truncate(data_start + offset + V * row_bytes)
        for r in sorted(set(written_rows)):
            f.seek(data_start + offset + r * row_bytes)
            f.write(encode(rng.standard_normal(L * E * D) * 0.5, "F16")[0])


def run_big_table(mole, tmp):
    d = os.path.join(tmp, "big_table")
    c = BIG_TABLE
    wrap = 2 ** 32 // (c["num_hidden_layers"] * c["num_experts"] * c["hidden_size"] * 2)  # rows per 4 GiB
    cut = [i % wrap for i in BIG_IDS] + [i % (wrap // 2) for i in BIG_IDS]
    write_sparse_table_checkpoint(d, c, BIG_IDS + cut, 4242)
    model = mole_ref.Model(d)
    if model.form != "infer" or os.stat(os.path.join(d, "model.safetensors")).st_size < 2 ** 32 + 2 ** 29:
        raise CaseFailure("the checkpoint written is not an inference form with a table past 4 GiB")
    ids = ",".join(map(str, BIG_IDS))
    text = mole.run("logits", "-m", d, "--ids", ids, "--backend", "cpu", "--lut", "disk")
    got = np.array(json.loads(text)["logits"], dtype=np.float64)
    return compare([(got, model.forward(BIG_IDS))], REL_TOL, "--backend cpu --lut disk")


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mole", help="path to the mole executable")
    ap.add_argument("--self-test", action="store_true", help="only check the reference itself (no mole)")
    ap.add_argument("-k", dest="only", help="run only cases whose name contains this")
    args = ap.parse_args()

    if not args.self_test:
        if not args.mole:
            ap.error("--mole PATH is required (or use --self-test)")
        if not (os.path.isfile(args.mole) and os.access(args.mole, os.X_OK)):
            print(f"FAIL mole binary not found or not executable: {args.mole}")
            print("0 passed, 1 failed")
            return 1

    passed = failed = 0

    def case(name, fn, *fn_args):
        nonlocal passed, failed
        if args.only and args.only not in name:
            return
        try:
            err = fn(*fn_args)
            print(f"ok {name} rel_err={err:.3e}", flush=True)
            passed += 1
        except CaseFailure as e:
            print(f"FAIL {name} {e}", flush=True)
            failed += 1
        except Exception as e:  # a bug in this driver or an unreadable checkpoint
            print(f"FAIL {name} {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
            failed += 1

    with tempfile.TemporaryDirectory(prefix="mole_ref_") as tmp:
        case("reference_vs_hand", self_test_hand, os.path.join(tmp, "hand"))
        case("reference_train_vs_infer", self_test_consistency, os.path.join(tmp, "cons"))
        if not args.self_test:
            mole = Mole(os.path.abspath(args.mole))
            for i, (name, form, dtype, settings, lengths) in enumerate(CASES):
                case(name, run_case, mole, os.path.join(tmp, "cases"), i, name, form, dtype,
                     settings, lengths)
            case("convert_f32", run_convert_f32, mole, os.path.join(tmp, "convert"))
            case("convert_f16", run_convert_f16, mole, os.path.join(tmp, "convert"))
            case("table_past_4gib", run_big_table, mole, os.path.join(tmp, "big"))

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
