#!/usr/bin/python3
"""Train a small Mixture-of-Lookup-Experts (MoLE) model, or its dense baseline, and save it in the
Hugging Face training form (the official modeling_mole.py layout and tensor names).

It doubles as an independent second implementation of the MoLE forward pass: the model below is written
plainly, one tensor op per line, in float32.

  MoLE layer:  h   = x + o_proj(attn(input_layernorm(x)))
               y   = post_attention_layernorm(h)
               out = h + down(gelu(up(y)))
                       + sum_e softmax(router(y))_e * expert_e(expert_layernorm(embed_tokens[id]))
               expert_e(u) = down_e(gelu(up_e(u)))
  dense layer: the same without the router / experts / expert_layernorm term.

Subcommands:
  prepare   text file -> token ids (through the mole CLI tokenizer), saved as a .pt tensor
  train     train and save a checkpoint directory (config.json, model.safetensors in bf16, tokenizer files)
  eval      full-softmax loss of a saved checkpoint on the train and validation sets
  reference greedy continuation + last logits with this PyTorch forward, on the saved (bf16-rounded) weights

Only needs torch (Debian's python3-torch) and the standard library; safetensors is written by hand.
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOLE = os.path.join(REPO, "build", "mole")
TOKENIZER_DIR = os.path.join(REPO, "data", "gpt-neox-tokenizer")


# ----------------------------------------------------------------------------------------------------------------
# Model


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)
        self.act = nn.GELU()  # exact erf GELU

    def forward(self, x):
        return self.down_proj(self.act(self.up_proj(x)))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(seq_len, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    pos = torch.arange(seq_len, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq)                 # (S, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)            # (S, hd)  half-rotation layout
    return emb.cos().float(), emb.sin().float()


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.head_dim = d // self.n_heads
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)   # (B, H, S, hd)
        k = self.k_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.n_kv != self.n_heads:
            rep = self.n_heads // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)                # (B, H, S, S)
        causal = torch.ones(s, s, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        return self.o_proj(out)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        eps = cfg["rms_norm_eps"]
        self.num_experts = cfg.get("num_experts", 0)
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.mlp = MLP(d, f)
        if self.num_experts:
            self.router = nn.Linear(d, self.num_experts, bias=False)
            self.expert_layernorm = RMSNorm(d, eps)
            self.experts = nn.ModuleList([MLP(d, f) for _ in range(self.num_experts)])

    def forward(self, x, ids, emb, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        y = self.post_attention_layernorm(h)
        out = h + self.mlp(y)
        if self.num_experts:
            gate = torch.softmax(self.router(y).float(), dim=-1)                       # (B, S, E)
            # The experts see only the token's embedding, so compute them once per distinct id in the batch
            # (identical to computing them per token) and gather back.
            uniq, inverse = torch.unique(ids, return_inverse=True)
            u = self.expert_layernorm(emb[uniq])                                        # (U, D)
            expert_out = torch.stack([expert(u) for expert in self.experts], dim=1)    # (U, E, D)
            expert_out = expert_out[inverse]                                            # (B, S, E, D)
            out = out + (gate.unsqueeze(-1) * expert_out).sum(dim=-2)
        return out


class Model(nn.Module):  # holds the "model." prefix of the tensor names
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class MoleForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Model(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        hd = cfg["hidden_size"] // cfg["num_attention_heads"]
        cos, sin = rope_cos_sin(cfg["max_position_embeddings"], hd, cfg["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, ids):                       # ids: (B, S) int64 -> logits (B, S, V) float32
        return self.lm_head(self.final_hidden(ids))

    def final_hidden(self, ids):                  # model.norm output, (B, S, D)
        s = ids.shape[1]
        cos, sin = self.rope_cos[:s], self.rope_sin[:s]
        emb_table = self.model.embed_tokens.weight
        x = emb_table[ids]
        for layer in self.model.layers:
            x = layer(x, ids, emb_table, cos, sin)
        return self.model.norm(x)


def init_weights(model, std=0.02):
    for name, p in model.named_parameters():
        if p.dim() == 2:
            nn.init.normal_(p, mean=0.0, std=std)
        # 1-D parameters are RMSNorm weights: left at 1


def make_config(args):
    cfg = {
        "architectures": ["MoleForCausalLM"],
        "model_type": "llama",
        "vocab_size": 50304,
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.heads,
        "max_position_embeddings": args.max_pos,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        "torch_dtype": "bfloat16",
    }
    if not args.dense:
        cfg["num_experts"] = args.experts
    return cfg


# ----------------------------------------------------------------------------------------------------------------
# safetensors (written and read with the standard library + torch)

_DTYPES = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}
_FROM = {v: k for k, v in _DTYPES.items()}


def save_safetensors(path, tensors, dtype=torch.bfloat16):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(dtype).contiguous().cpu()
        raw = t.view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes()  # little-endian host
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)
    os.replace(path + ".tmp", path)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _FROM[info["dtype"]]
        a, b = info["data_offsets"]
        buf = bytearray(data[base + a:base + b])
        int_dt = torch.int16 if dt in (torch.bfloat16, torch.float16) else torch.int32
        t = torch.frombuffer(buf, dtype=int_dt).view(dt).reshape(info["shape"])
        out[name] = t
    return out


def save_checkpoint(model, cfg, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(out_dir, "model.safetensors"), dict(model.state_dict()))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))


def load_checkpoint(out_dir):
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = json.load(f)
    model = MoleForCausalLM(cfg)
    sd = {k: v.float() for k, v in load_safetensors(os.path.join(out_dir, "model.safetensors")).items()}
    model.load_state_dict(sd, strict=True)
    return model, cfg


# ----------------------------------------------------------------------------------------------------------------
# Data


def tokenize(text_path):
    out = subprocess.run([MOLE, "tokenize", "--tokenizer", os.path.join(TOKENIZER_DIR, "tokenizer.json"),
                          "--file", text_path], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.replace("\n", ",").split(",") if x.strip()]


def cmd_prepare(args):
    ids = tokenize(args.text)
    t = torch.tensor(ids, dtype=torch.int32)
    n_val = int(len(t) * args.val_frac)
    torch.save({"train": t[:-n_val].clone(), "val": t[-n_val:].clone()}, args.out)
    print(f"{len(t)} tokens: train {len(t) - n_val}, val {n_val} (last {args.val_frac:.0%}) -> {args.out}")


# ----------------------------------------------------------------------------------------------------------------
# Training


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(model, val, seq, batch, n_batches):
    model.eval()
    n_windows = (len(val) - 1) // seq
    starts = torch.linspace(0, n_windows - 1, min(n_windows, n_batches * batch)).long() * seq
    losses = []
    for i in range(0, len(starts), batch):
        xs = torch.stack([val[s:s + seq + 1].long() for s in starts[i:i + batch]])
        logits = model(xs[:, :-1])
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xs[:, 1:].reshape(-1)).item())
    model.train()
    return sum(losses) / len(losses)


def cmd_train(args):
    torch.set_num_threads(args.threads)
    data = torch.load(args.data)
    train, val = data["train"], data["val"]
    cfg = make_config(args)
    torch.manual_seed(args.seed)
    model = MoleForCausalLM(cfg)
    init_weights(model)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)  # data order: identical for MoLE and dense with the same seed
    neg_gen = torch.Generator().manual_seed(args.seed + 1)
    # Training softmax over a candidate set (the full vocabulary is 50304 but the KJV uses ~9k ids, and the lm_head
    # is most of the compute on one CPU core): every id that occurs in the training text, plus --neg-samples other
    # ids drawn afresh each step, so the rows of never-seen ids are pushed down too. 0 = full softmax.
    # Validation loss is always the full 50304-way softmax.
    vocab = cfg["vocab_size"]
    train_vocab = torch.unique(train.long())
    seen = torch.zeros(vocab, dtype=torch.bool)
    seen[train_vocab] = True
    unseen = torch.nonzero(~seen).flatten()
    remap = torch.full((vocab,), -1, dtype=torch.long)
    remap[train_vocab] = torch.arange(len(train_vocab))
    os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
    log = open(args.log, "w")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"# {'dense' if args.dense else 'MoLE'} params={n_params} config={json.dumps(cfg)}")
    say(f"# args={json.dumps(vars(args))}")
    say(f"# train_tokens={len(train)} val_tokens={len(val)}")
    t0 = time.time()
    step = 0
    train_loss_ema = None
    while step < args.steps:
        starts = torch.randint(0, len(train) - args.seq - 1, (args.batch,), generator=gen)
        xs = torch.stack([train[s:s + args.seq + 1].long() for s in starts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        if args.neg_samples:
            negatives = unseen[torch.randperm(len(unseen), generator=neg_gen)[:args.neg_samples]]
            cand = torch.cat([train_vocab, negatives])
            hidden = model.final_hidden(xs[:, :-1])
            logits = hidden @ model.lm_head.weight[cand].t()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), remap[xs[:, 1:]].reshape(-1))
        else:
            logits = model(xs[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xs[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        train_loss_ema = loss.item() if train_loss_ema is None else 0.95 * train_loss_ema + 0.05 * loss.item()
        elapsed = time.time() - t0
        if step % args.log_every == 0 or step == args.steps:
            msg = f"step {step} lr {lr_at(step - 1, args):.2e} train_loss {loss.item():.4f} train_ema {train_loss_ema:.4f} time {elapsed:.0f}s"
            if step % args.eval_every == 0 or step == args.steps:
                msg += f" val_loss {evaluate(model, val, args.seq, args.batch, args.eval_batches):.4f}"
                save_checkpoint(model, cfg, args.out)
            say(msg)
        if args.max_time and elapsed > args.max_time:
            say(f"# wall-clock budget {args.max_time}s reached at step {step}")
            break
    final_val = evaluate(model, val, args.seq, args.batch, args.final_eval_batches)
    say(f"final step {step} val_loss {final_val:.4f} time {time.time() - t0:.0f}s")
    save_checkpoint(model, cfg, args.out)
    # the loss of the weights as saved (bf16-rounded)
    model_bf16, _ = load_checkpoint(args.out)
    say(f"final step {step} val_loss_bf16_weights {evaluate(model_bf16, val, args.seq, args.batch, args.final_eval_batches):.4f}")


@torch.no_grad()
def cmd_eval(args):
    # full 50304-way softmax loss of a saved checkpoint on evenly spaced windows of the train and validation sets
    torch.set_num_threads(args.threads)
    data = torch.load(args.data)
    model, _ = load_checkpoint(args.model)
    res = {"model": args.model,
           "train_loss": evaluate(model, data["train"], args.seq, args.batch, args.batches),
           "val_loss": evaluate(model, data["val"], args.seq, args.batch, args.batches),
           "tokens_each": args.seq * args.batch * args.batches}
    print(json.dumps(res))


# ----------------------------------------------------------------------------------------------------------------
# Reference outputs for the end-to-end test


@torch.no_grad()
def cmd_reference(args):
    torch.set_num_threads(args.threads)
    model, cfg = load_checkpoint(args.model)  # bf16 weights as saved, computed in float32
    model.eval()
    with open(args.tmp, "w") as f:
        f.write(args.prompt)
    prompt_ids = tokenize(args.tmp)
    os.remove(args.tmp)
    ids = list(prompt_ids)
    last_logits = None
    for _ in range(args.n):
        logits = model(torch.tensor([ids]))[0, -1]
        if last_logits is None:
            last_logits = logits
        ids.append(int(torch.argmax(logits)))
    greedy = ids[len(prompt_ids):]
    out = subprocess.run([MOLE, "detokenize", "--tokenizer", os.path.join(TOKENIZER_DIR, "tokenizer.json"),
                          "--ids", ",".join(map(str, greedy))], check=True, capture_output=True, text=True).stdout
    top = torch.topk(last_logits, 10)
    ref = {"prompt": args.prompt, "prompt_ids": prompt_ids, "greedy_ids": greedy, "greedy_text": out.rstrip("\n"),
           "last_logits_top10": [[int(i), float(v)] for v, i in zip(top.values, top.indices)]}
    # top-2 margins along the greedy path, to judge any mismatch with another implementation
    margins = []
    for k in range(len(greedy)):
        logits = model(torch.tensor([ids[:len(prompt_ids) + k]]))[0, -1]
        t2 = torch.topk(logits, 2).values
        margins.append(round(float(t2[0] - t2[1]), 5))
    ref["greedy_top2_margins"] = margins
    with open(args.out, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(json.dumps(ref))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--text", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--val-frac", type=float, default=0.05)
    p = sub.add_parser("train")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--dense", action="store_true")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", type=float, default=3e-4)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--final-eval-batches", type=int, default=16)
    p.add_argument("--neg-samples", type=int, default=2048,
                   help="training softmax over the ids seen in training + this many random others; 0 = full softmax")
    p.add_argument("--max-time", type=float, default=0, help="stop after this many seconds (0 = no limit)")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("eval")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("reference")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", default="In the beginning God created")
    p.add_argument("-n", type=int, default=24)
    p.add_argument("--out", required=True)
    p.add_argument("--tmp", default="/tmp/mole_ref_prompt.txt")
    p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    {"prepare": cmd_prepare, "train": cmd_train, "eval": cmd_eval, "reference": cmd_reference}[args.cmd](args)


if __name__ == "__main__":
    main()
