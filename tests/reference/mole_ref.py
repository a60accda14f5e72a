#!/usr/bin/python3
"""Independent float64 NumPy reference of the MoLE / dense Llama-style forward pass.

This file is a specification: it is written from the model equations (MoLE,
arXiv 2503.15798), not from the C++ runtime, and favours clarity over speed.
It depends only on NumPy and the Python standard library.

Model (one sequence, positions 0..T-1, causal attention):

    x = embed_tokens[ids]
    for each layer l:
        a   = rmsnorm(x, input_layernorm)
        h   = x + attention(a)                      # RoPE, GQA, causal softmax
        y   = rmsnorm(h, post_attention_layernorm)
        mlp = down_proj(gelu(up_proj(y)))
        MoLE only:
            r   = softmax(router(y))                # over E experts
            out = expert outputs for the *token id* (not the hidden state):
                  training form : experts.e MLP applied to rmsnorm(embed_tokens[id], expert_layernorm)
                  inference form: moe_table[id].reshape(L, E, D)[l, e]
            lut = sum_e r_e * out_e
        x = h + mlp (+ lut)
    logits = rmsnorm(x, model.norm) @ lm_head.T       # embed_tokens if tied

CLI:  python3 tests/reference/mole_ref.py -m DIR --ids 1,2,3
      prints {"logits": [[...V floats...], ...one row per position]}
"""

import argparse
import json
import math
import mmap
import os
import sys

import numpy as np

# ----------------------------------------------------------------------------
# safetensors reading
# ----------------------------------------------------------------------------

# safetensors dtype name -> little-endian NumPy storage dtype.
# BF16 is stored as raw uint16 and widened by hand (NumPy has no bfloat16).
_STORAGE_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


def bf16_bits_to_float32(bits):
    """bfloat16 bit patterns (uint16 array) -> float32: the bits are the top half of a float32."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def to_float64(raw, dtype_name):
    """Convert a raw storage array (as returned by SafetensorsFile.raw) to float64."""
    if dtype_name == "BF16":
        return bf16_bits_to_float32(raw).astype(np.float64)
    return np.asarray(raw).astype(np.float64)


class SafetensorsFile:
    """One .safetensors file, memory-mapped.

    Layout: 8-byte little-endian u64 N, then N bytes of JSON header
    {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}},
    then the data; offsets are relative to byte 8 + N.
    """

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (header_len,) = np.frombuffer(self._map, dtype="<u8", count=1)
        header_len = int(header_len)
        header = json.loads(bytes(self._map[8:8 + header_len]).decode("utf-8"))
        self.metadata = header.pop("__metadata__", None) or {}
        self.entries = header  # name -> {"dtype", "shape", "data_offsets"}
        self._data_start = 8 + header_len

    def names(self):
        return list(self.entries)

    def dtype(self, name):
        return self.entries[name]["dtype"]

    def shape(self, name):
        return tuple(self.entries[name]["shape"])

    def raw(self, name):
        """The tensor in its storage dtype (BF16 as uint16 bit patterns), zero-copy."""
        entry = self.entries[name]
        dtype_name = entry["dtype"]
        if dtype_name not in _STORAGE_DTYPES:
            raise ValueError(f"{self.path}: tensor {name}: unsupported dtype {dtype_name}")
        storage = _STORAGE_DTYPES[dtype_name]
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * storage.itemsize:
            raise ValueError(f"{self.path}: tensor {name}: byte size {end - begin} "
                             f"does not match shape {shape} x {dtype_name}")
        array = np.frombuffer(self._map, dtype=storage, count=count,
                              offset=self._data_start + begin)
        return array.reshape(shape)


class Checkpoint:
    """All tensors of a checkpoint directory: model.safetensors, or a sharded set
    described by model.safetensors.index.json ({"weight_map": {name: file}})."""

    def __init__(self, directory):
        self.directory = directory
        self._where = {}  # tensor name -> SafetensorsFile
        index_path = os.path.join(directory, "model.safetensors.index.json")
        single_path = os.path.join(directory, "model.safetensors")
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            files = {}
            for name, file_name in weight_map.items():
                if file_name not in files:
                    files[file_name] = SafetensorsFile(os.path.join(directory, file_name))
                if name not in files[file_name].entries:
                    raise ValueError(f"{name} listed in the index but missing from {file_name}")
                self._where[name] = files[file_name]
        elif os.path.exists(single_path):
            st = SafetensorsFile(single_path)
            for name in st.names():
                self._where[name] = st
        else:
            raise FileNotFoundError(f"no model.safetensors(.index.json) in {directory}")

    def __contains__(self, name):
        return name in self._where

    def names(self):
        return list(self._where)

    def dtype(self, name):
        return self._where[name].dtype(name)

    def shape(self, name):
        return self._where[name].shape(name)

    def get(self, name):
        """The whole tensor as float64."""
        if name not in self._where:
            raise KeyError(f"tensor {name} not found in {self.directory}")
        st = self._where[name]
        return to_float64(st.raw(name), st.dtype(name))

    def rows(self, name, indices):
        """Rows `indices` of a 2-D tensor as float64 (avoids widening a large table)."""
        st = self._where[name]
        return to_float64(st.raw(name)[np.asarray(indices)], st.dtype(name))


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------

class Config:
    """The config.json fields the forward pass needs."""

    def __init__(self, cfg):
        self.vocab_size = int(cfg["vocab_size"])
        self.hidden_size = int(cfg["hidden_size"])
        self.intermediate_size = int(cfg["intermediate_size"])
        self.num_layers = int(cfg["num_hidden_layers"])
        self.num_heads = int(cfg["num_attention_heads"])
        kv = cfg.get("num_key_value_heads")
        self.num_kv_heads = int(kv) if kv is not None else self.num_heads
        self.max_position_embeddings = int(cfg["max_position_embeddings"])
        self.rms_norm_eps = float(cfg["rms_norm_eps"])
        theta = cfg.get("rope_theta")
        self.rope_theta = float(theta) if theta is not None else 10000.0
        self.tie_word_embeddings = bool(cfg.get("tie_word_embeddings", False))
        self.num_experts = int(cfg.get("num_experts") or 0)

        self.rope_scaling_type = None
        self.rope_scaling_factor = 1.0
        scaling = cfg.get("rope_scaling")
        if scaling:
            kind = scaling.get("type", scaling.get("rope_type"))
            if kind == "default":
                kind = None
            elif kind not in ("linear", "dynamic"):
                raise ValueError(f"unsupported rope_scaling type {kind!r}")
            self.rope_scaling_type = kind
            self.rope_scaling_factor = float(scaling.get("factor", 1.0))

        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")

    @staticmethod
    def load(directory):
        with open(os.path.join(directory, "config.json")) as f:
            return Config(json.load(f))


# ----------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------

def rmsnorm(x, weight, eps):
    """w * x / sqrt(mean(x^2) + eps), over the last axis."""
    return weight * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(z, axis=-1):
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def mlp(x, up, down):
    """down(gelu(up(x))) with up (F, D) and down (D, F), nn.Linear layout (out, in)."""
    return gelu(x @ up.T) @ down.T


def rope_cos_sin(cfg, num_positions):
    """cos, sin tables of shape (T, head_dim) for positions 0..T-1 (half-rotation layout)."""
    hd = cfg.head_dim
    positions = np.arange(num_positions, dtype=np.float64)
    base = cfg.rope_theta
    if cfg.rope_scaling_type == "linear":
        positions = positions / cfg.rope_scaling_factor
    elif cfg.rope_scaling_type == "dynamic":
        seq_len = num_positions  # max position + 1
        if seq_len > cfg.max_position_embeddings:
            factor = cfg.rope_scaling_factor
            base = cfg.rope_theta * ((factor * seq_len / cfg.max_position_embeddings)
                                     - (factor - 1)) ** (hd / (hd - 2))
    inv_freq = 1.0 / base ** (np.arange(0, hd // 2, dtype=np.float64) * 2.0 / hd)
    angles = np.outer(positions, inv_freq)                 # (T, hd/2)
    angles = np.concatenate([angles, angles], axis=-1)     # (T, hd)
    return np.cos(angles), np.sin(angles)


def apply_rope(u, cos, sin):
    """u: (heads, T, hd). u' = u*cos + rotate_half(u)*sin, rotate_half(u) = [-u2, u1]."""
    half = u.shape[-1] // 2
    rotated = np.concatenate([-u[..., half:], u[..., :half]], axis=-1)
    return u * cos + rotated * sin


def attention(cfg, a, wq, wk, wv, wo, cos, sin):
    """Causal multi-head attention with grouped KV heads. a: (T, D) -> (T, D)."""
    T = a.shape[0]
    H, KVH, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = (a @ wq.T).reshape(T, H, hd).transpose(1, 0, 2)      # (H, T, hd)
    k = (a @ wk.T).reshape(T, KVH, hd).transpose(1, 0, 2)    # (KVH, T, hd)
    v = (a @ wv.T).reshape(T, KVH, hd).transpose(1, 0, 2)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)

    group = H // KVH                       # query head h reads kv head h // group
    k = np.repeat(k, group, axis=0)        # (H, T, hd)
    v = np.repeat(v, group, axis=0)

    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)        # (H, Tq, Tk)
    causal = np.tril(np.ones((T, T), dtype=bool))             # key pos <= query pos
    scores = np.where(causal, scores, -np.inf)
    out = softmax(scores, axis=-1) @ v                        # (H, T, hd)
    out = out.transpose(1, 0, 2).reshape(T, H * hd)           # concat heads
    return out @ wo.T


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------

class Model:
    """A checkpoint directory: config.json plus safetensors weights.

    form is "dense", "train" (experts.* MLPs + expert_layernorm) or "infer"
    (model.moe_table.weight), detected from the tensor names.
    """

    def __init__(self, directory):
        self.directory = directory
        self.cfg = Config.load(directory)
        self.ckpt = Checkpoint(directory)
        self._cache = {}
        if "model.moe_table.weight" in self.ckpt:
            self.form = "infer"
        elif "model.layers.0.experts.0.up_proj.weight" in self.ckpt:
            self.form = "train"
        elif "model.layers.0.router.weight" in self.ckpt:
            raise ValueError("router present but neither experts nor model.moe_table.weight")
        else:
            self.form = "dense"
        if self.form != "dense" and self.cfg.num_experts <= 0:
            raise ValueError(f"{self.form}-form MoLE tensors but config num_experts is 0")
        if self.form == "dense" and self.cfg.num_experts > 0:
            raise ValueError("config has num_experts > 0 but no expert tensors")
        if self.form == "infer":
            c = self.cfg
            want = (c.vocab_size, c.num_layers * c.num_experts * c.hidden_size)
            if self.ckpt.shape("model.moe_table.weight") != want:
                raise ValueError(f"model.moe_table.weight shape "
                                 f"{self.ckpt.shape('model.moe_table.weight')} != {want}")

    def w(self, name):
        """A weight as float64 (cached)."""
        if name not in self._cache:
            self._cache[name] = self.ckpt.get(name)
        return self._cache[name]

    def expert_outputs(self, layer, ids):
        """Expert outputs for each token id: (T, E, D)."""
        c = self.cfg
        if self.form == "infer":
            rows = self.ckpt.rows("model.moe_table.weight", ids)            # (T, L*E*D)
            return rows.reshape(len(ids), c.num_layers, c.num_experts, c.hidden_size)[:, layer]
        p = f"model.layers.{layer}."
        emb = self.w("model.embed_tokens.weight")[ids]                       # (T, D)
        u = rmsnorm(emb, self.w(p + "expert_layernorm.weight"), c.rms_norm_eps)
        outs = [mlp(u, self.w(p + f"experts.{e}.up_proj.weight"),
                    self.w(p + f"experts.{e}.down_proj.weight"))
                for e in range(c.num_experts)]
        return np.stack(outs, axis=1)

    def forward(self, ids):
        """Logits (T, V) float64 for token ids at positions 0..T-1."""
        c = self.cfg
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError("ids must be a non-empty 1-D sequence")
        if ids.min() < 0 or ids.max() >= c.vocab_size:
            raise ValueError("token id out of range")
        eps = c.rms_norm_eps
        cos, sin = rope_cos_sin(c, len(ids))

        x = self.w("model.embed_tokens.weight")[ids]
        for l in range(c.num_layers):
            p = f"model.layers.{l}."
            a = rmsnorm(x, self.w(p + "input_layernorm.weight"), eps)
            h = x + attention(c, a,
                              self.w(p + "self_attn.q_proj.weight"),
                              self.w(p + "self_attn.k_proj.weight"),
                              self.w(p + "self_attn.v_proj.weight"),
                              self.w(p + "self_attn.o_proj.weight"), cos, sin)
            y = rmsnorm(h, self.w(p + "post_attention_layernorm.weight"), eps)
            x = h + mlp(y, self.w(p + "mlp.up_proj.weight"), self.w(p + "mlp.down_proj.weight"))
            if self.form != "dense":
                r = softmax(y @ self.w(p + "router.weight").T)          # (T, E)
                out = self.expert_outputs(l, ids)                       # (T, E, D)
                x = x + np.einsum("te,ted->td", r, out)

        x = rmsnorm(x, self.w("model.norm.weight"), eps)
        head = "model.embed_tokens.weight" if c.tie_word_embeddings else "lm_head.weight"
        return x @ self.w(head).T


def forward(directory, ids):
    """Convenience: logits (T, V) for checkpoint `directory` and token ids."""
    return Model(directory).forward(ids)


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 reference forward pass of a MoLE/dense checkpoint")
    ap.add_argument("-m", "--model", required=True, help="checkpoint directory")
    ap.add_argument("--ids", required=True, help="comma-separated token ids, e.g. 1,2,3")
    args = ap.parse_args(argv)
    ids = [int(s) for s in args.ids.split(",") if s.strip()]
    logits = forward(args.model, ids)
    json.dump({"logits": logits.tolist()}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
