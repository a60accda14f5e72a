#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/NAME/): small valid inputs of each format and
a few broken ones, for libFuzzer to mutate. Deterministic; rerun after changing it: python3 tests/fuzz/make_seeds.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def corpus(name):
    d = os.path.join(HERE, 'corpus', name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    header, data = {}, b''
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    hb = json.dumps(header).encode()
    if pad:
        hb += b' ' * (-len(hb) % 8)
    return struct.pack('<Q', len(hb)) + hb + data


d = corpus('safetensors')
f32 = struct.pack('<4f', 1.0, -2.5, 0.0, 3.25)
write(d, 'two_tensors', safetensors([('a', 'F32', [2, 2], f32), ('b', 'F16', [3], b'\x00\x3c\x00\xc0\x00\x00')],
                                    {'format': 'pt'}))
write(d, 'bf16_and_empty', safetensors([('w', 'BF16', [2], b'\x80\x3f\x00\x40'), ('z', 'F32', [0], b'')]))
write(d, 'no_metadata_unpadded', safetensors([('x', 'F32', [1], f32[:4])], pad=False))
write(d, 'empty_header', safetensors([]))
write(d, 'overlap', struct.pack('<Q', 107) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
      b'"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}' + b'\x00' * 8)
write(d, 'truncated', safetensors([('a', 'F32', [2, 2], f32)])[:-5])
write(d, 'unknown_dtype', safetensors([('q', 'I8', [4], b'\x01\x02\x03\x04')]))

d = corpus('config')
tiny = {'architectures': ['MoleForCausalLM'], 'model_type': 'llama', 'vocab_size': 384, 'hidden_size': 64,
        'intermediate_size': 128, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2,
        'max_position_embeddings': 512, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0, 'rope_scaling': None,
        'hidden_act': 'gelu', 'tie_word_embeddings': False, 'bos_token_id': 0, 'eos_token_id': 0, 'num_experts': 4}
write(d, 'tiny.json', json.dumps(tiny, indent=2))
write(d, 'dense.json', json.dumps({k: v for k, v in tiny.items() if k != 'num_experts'}))
write(d, 'linear.json', json.dumps(dict(tiny, rope_scaling={'type': 'linear', 'factor': 2.0}, head_dim=16)))
write(d, 'dynamic.json', json.dumps(dict(tiny, rope_scaling={'rope_type': 'dynamic', 'factor': 4.0},
                                         eos_token_id=[0, 2], tie_word_embeddings=True)))
write(d, 'mole_160m.json', json.dumps(dict(tiny, vocab_size=50304, hidden_size=768, intermediate_size=3072,
                                           num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
                                           max_position_embeddings=2048)))
write(d, 'bad_heads.json', json.dumps(dict(tiny, hidden_size=66)))

d = corpus('index')
write(d, 'good.json', json.dumps({'metadata': {'total_size': 12}, 'weight_map': {
    'a': 'model-00001-of-00002.safetensors', 'b': 'model-00001-of-00002.safetensors',
    'c': 'model-00002-of-00002.safetensors'}}, indent=2))
write(d, 'one_shard.json', json.dumps({'weight_map': {'c': 'model-00002-of-00002.safetensors'}}))
write(d, 'escape.json', json.dumps({'weight_map': {'d': '../outside.safetensors'}}))
write(d, 'missing.json', json.dumps({'weight_map': {'a': 'model-00001-of-00002.safetensors', 'e': 'nope.safetensors'}}))

# A small byte-level BPE tokenizer: the 256 byte characters, a few merges, added tokens with every flag.
alphabet = [c for c in range(33, 127)] + [c for c in range(161, 173)] + [c for c in range(174, 256)]
chars, extra = {}, 256
for b in range(256):
    chars[b] = chr(b) if b in alphabet else chr(extra)
    if b not in alphabet:
        extra += 1
vocab = {chars[b]: i for i, b in enumerate(range(256))}
merges = []
for a, b in [('h', 'e'), ('l', 'l'), ('he', 'll'), ('hell', 'o'), (chars[32], 'w'), ('o', 'r'), (chars[32] + 'w', 'or')]:
    vocab.setdefault(a + b, len(vocab))
    merges.append(a + ' ' + b)
n = len(vocab)
small = {
    'version': '1.0',
    'added_tokens': [
        {'id': n, 'content': '<s>', 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False,
         'special': True},
        {'id': n + 1, 'content': '<mask>', 'single_word': False, 'lstrip': True, 'rstrip': True, 'normalized': False,
         'special': True},
        {'id': n + 2, 'content': 'cafe\u0301', 'single_word': True, 'lstrip': False, 'rstrip': False,
         'normalized': True, 'special': False},
        {'id': 0, 'content': chars[0], 'special': False}],
    'normalizer': {'type': 'NFC'},
    'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
    'post_processor': {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                                                                {'Sequence': {'id': 'A', 'type_id': 0}}],
                       'pair': [], 'special_tokens': {'<s>': {'id': '<s>', 'ids': [n], 'tokens': ['<s>']}}},
    'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
    'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
              'end_of_word_suffix': None, 'fuse_unk': False, 'vocab': vocab, 'merges': merges},
}
d = corpus('tokenizer_json')
write(d, 'small.json', json.dumps(small, ensure_ascii=False))
pairs = json.loads(json.dumps(small))
pairs['model']['merges'] = [m.split(' ') for m in merges]
pairs['normalizer'] = {'type': 'Sequence', 'normalizers': [{'type': 'NFC'}]}
pairs['post_processor'] = {'type': 'Sequence', 'processors': [{'type': 'ByteLevel'}]}
pairs['pre_tokenizer'] = {'type': 'ByteLevel', 'add_prefix_space': True, 'use_regex': False}
write(d, 'pairs_sequence.json', json.dumps(pairs))
write(d, 'minimal.json', json.dumps({'model': {'merges': merges[:2], 'vocab': vocab},
                                     'pre_tokenizer': {'type': 'ByteLevel'}, 'decoder': {'type': 'ByteLevel'}}))
write(d, 'wordpiece.json', json.dumps({'model': {'type': 'WordPiece', 'vocab': {'a': 0}}}))

d = corpus('tokenizer_encode')
cases = json.load(open(os.path.join(ROOT, 'tests', 'data', 'tokenizer_cases.json')))
texts = [c['text'] for c in cases['cases'][:120:3]] + [c['text'] for c in cases['variant_cases'][:30:3]]
texts += [c['text'] for c in cases['unicode_version_cases'] if ' ' not in c['text']][::4]
for i, t in enumerate(texts):
    write(d, 'case_%03d' % i, t)
write(d, 'invalid_utf8', b'ab\xff\xfe cd \xc3')
write(d, 'ids', struct.pack('<8i', 12092, 1533, 0, 50276, 50290, -7, 187, 2))
print('wrote seed corpora under', os.path.relpath(os.path.join(HERE, 'corpus'), ROOT))
