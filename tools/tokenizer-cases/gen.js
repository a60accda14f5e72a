// Generates tests/data/tokenizer_cases.json: what Hugging Face's own tokenizers library (Node binding of the Rust
// crate) returns for GPT-NeoX's tokenizer.json, so the C++ tokenizer is checked against an independent implementation.
// Usage: cd tools/tokenizer-cases && npm install && node gen.js
'use strict';

const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const kRoot = path.resolve(__dirname, '..', '..');
const kTokenizerPath = path.join(kRoot, 'data', 'gpt-neox-tokenizer', 'tokenizer.json');
const kOutPath = path.join(kRoot, 'tests', 'data', 'tokenizer_cases.json');
const kRandomCases = 400;
const kSeed = 20240607;

const fixed = [
  '',
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.',
  ' leading space',
  'trailing space ',
  '  two leading spaces',
  'two trailing spaces  ',
  'multiple   spaces    between     words',
  ' ',
  '  ',
  '   ',
  '\t',
  '\n',
  '\r\n',
  'tabs\tbetween\twords',
  'line one\nline two\n\nline four\r\nline five',
  '\n\n\n',
  ' \n \n ',
  'a \tb',
  'a\t b',
  'x' + ' '.repeat(24) + 'y',
  'x' + ' '.repeat(25) + 'y',
  'x' + ' '.repeat(30) + 'y',
  'x' + ' '.repeat(49) + 'y',
  ' '.repeat(100),
  '\t'.repeat(10) + 'tabbed',
  '\n'.repeat(20) + 'newlines',
  'end with spaces' + ' '.repeat(7),
  'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
  'class Foo:\n    def __init__(self, x: int = 3) -> None:\n        self.x = x  # comment\n\n\tdef bar(self): pass\n',
  '#include <vector>\n\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n' +
    '  return v.size() > 2 ? 0 : 1;\n}\n',
  'template <typename T>\nstruct Node {\n    T value;\n    Node* next = nullptr;  // owned elsewhere\n};\n',
  'if (a != b && c <= d || e >= f) { x += 1; y -= 2; z <<= 3; }',
  '1234567',
  '3.14159',
  '1e-5',
  '-42 +17 0x1F 0b1010 1,000,000 12:30 2024-01-01',
  'Numbers: 1 22 333 4444 55555 666666 7777777 88888888',
  "don't",
  "I'M",
  "they'll",
  "it's",
  "We're sure you've seen what I'd do, and I'm certain she'll go.",
  "DON'T SHOUT, IT'S LOUD, THEY'RE HERE",
  "'s 't 're 've 'm 'll 'd",
  "''s '''t rock'n'roll",
  'caf\u00e9',
  'cafe\u0301',
  'Caf\u00e9 au lait, cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade',
  'Cafe\u0301 au lait, cre\u0300me bru\u0302le\u0301e',
  '\u212b \u2126 \u00c5 A\u030a',
  '\u4f60\u597d\uff0c\u4e16\u754c\uff01',
  '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002',
  '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8',
  '\u1100\u1161\u11a8',
  '\ud83d\ude00',
  'I love pizza \ud83c\udf55\ud83c\udf55!',
  '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 family',
  '\ud83d\udc4d\ud83c\udffd thumbs',
  '\ud83d\udc69\ud83c\udffe\u200d\ud83d\udcbb coder',
  '\ud83c\uddfa\ud83c\uddf8\ud83c\uddef\ud83c\uddf5',
  '\u2764\ufe0f \u263a\ufe0f',
  '<|endoftext|>',
  'Hello<|endoftext|>world',
  'First document.<|endoftext|>Second document.',
  'a <|endoftext|> b',
  'a  <|endoftext|>  b',
  '<|endoftext|><|endoftext|>',
  '<|padding|>pad',
  '<|endoftext|',
  '<|endoftext|>\n\n<|endoftext|>',
  '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
  '\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?',
  'Mixed: English, \u0420\u0443\u0441\u0441\u043a\u0438\u0439, \u0627\u0644\u0639\u0631\u0628\u064a\u0629, ' +
    '\u0939\u093f\u0928\u094d\u0926\u0940, \u4e2d\u6587, \u05e2\u05d1\u05e8\u05d9\u05ea',
  '\u03b1\u03b2\u03b3 \u0394\u03b5\u03bb\u03c4\u03b1',
  'a', 'Z', '0', '!', '.', "'", '"', '\\', '\u00e9', '\u00df', '\u4e2d', '\ud83d\ude80', '\u0000', '\u007f',
  '\u00a0', '\u3000', '\u2028', '\u0085', '\u200b', '\ufeff', '\ufffd',
  'non\u00a0breaking\u2003em\u3000ideographic',
  '\u00bd \u00b2 \u2163 \u0663\u0664 \u096b',
  '\u2460\u2461\u2462 \u2153',
  'x\u0000y',
  'ctrl\u0001\u0002\u001b[0m',
  '$$$ %%% ^^^ &&& *** ((( ))) ___ +++ === ~~~',
  '...!!!???',
  'https://example.com/path?query=1&x=y#frag',
  'user@example.com',
  'e\u0301\u0301\u0301',
  '\u0301start with combining mark',
  'A\u0308\u0304',
  '\uac00\u11a7 \uac00\u11a8 \u1100\u1161\u11a7',
  'a\u001cb\u001fc\u180ed\u200be',
  '\u4e2d\u6587\u6bb5\u843d\u6ca1\u6709\u7a7a\u683c\u6240\u4ee5\u6574\u53e5\u662f\u4e00\u4e2a\u8bcd'.repeat(8),
  'Supercalifragilisticexpialidocious'.repeat(4),
];

const pieces = [
  'the', 'The', 'of', 'and', 'to', 'in', 'is', 'tokenizer', 'language', 'model', 'Mixture', 'Experts',
  ' ', ' ', ' ', '  ', '    ', ' '.repeat(13), '\t', '\n', '\n\n', '\r\n', ' \n',
  '.', ',', ';', ':', '!', '?', '(', ')', '{', '}', '[', ']', '"', "'", '-', '_', '/', '#', '@',
  "don't", "I'M", "they'll", "it's", "'s", "'ve",
  '0', '7', '42', '1234567', '3.14159', '1e-5', '\u00bd', '\u0663',
  'caf\u00e9', 'cafe\u0301', '\u0301', '\u00c5', 'A\u030a', '\u00fc', 'u\u0308',
  '\u4e2d\u6587', '\u65e5\u672c', '\u3002', '\ud55c\uad6d',
  '\ud83d\ude00', '\ud83d\udc4d\ud83c\udffd', '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67', '\u2764\ufe0f',
  '\ud83c\uddfa\ud83c\uddf8',
  '<|endoftext|>', '<|padding|>', '<|', '|>',
  '\u0645\u0631\u062d\u0628\u0627', '\u0928\u092e\u0938\u094d\u0924\u0947', '\u041f\u0440\u0438\u0432\u0435\u0442',
  '    return x', 'def f():', 'std::vector<int>', '->', '==', '\u00a0', '\u3000', '\u200b',
];

// Code points drawn for the fuzz-like cases: assigned, stable ranges only, so Unicode version differences between
// libraries do not matter.
const ranges = [
  [0x20, 0x7e], [0x09, 0x0d], [0xa0, 0xff], [0x100, 0x17f], [0x300, 0x36f], [0x391, 0x3c9], [0x410, 0x44f],
  [0x5d0, 0x5ea], [0x627, 0x64a], [0x905, 0x939], [0x3041, 0x3096], [0x4e00, 0x4fff], [0xac00, 0xad00],
  [0x1f600, 0x1f64f], [0x1f3fb, 0x1f3ff], [0x2000, 0x200a], [0x2010, 0x2027],
];

// A variant of the tokenizer with added tokens that use every matching flag GPT-NeoX's own tokens leave off.
const variantAddedTokens = [
  { id: 50277, content: '<mask>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
  { id: 50278, content: '[SEP]', single_word: false, lstrip: false, rstrip: true, normalized: false, special: true },
  { id: 50279, content: 'xyzzy', single_word: true, lstrip: false, rstrip: false, normalized: true, special: false },
  // Given in NFD: HF matches and decodes its NFC form.
  {
    id: 50280, content: 'cafe\u0301', single_word: false, lstrip: true, rstrip: true, normalized: true, special: false,
  },
  { id: 50281, content: 'plugh', single_word: true, lstrip: true, rstrip: true, normalized: false, special: false },
];

const variantPieces = [
  '<mask>', '[SEP]', 'xyzzy', 'caf\u00e9', 'cafe\u0301', 'plugh', ' ', '  ', '\t', '\n', '\u3000', 'a', '_', '1',
  '\u00e9', '.', '<|endoftext|>', 'word', ' '.repeat(6),
];

const variantFixed = [
  'Fill the <mask> in', 'Fill the   <mask>   in', '<mask>', '   <mask>', 'a<mask>b',
  'one [SEP] two', 'one [SEP]   \n two', '[SEP]', 'x[SEP]',
  'xyzzy', 'say xyzzy now', 'sayxyzzy', 'xyzzyplugh', 'xyzzy_', '_xyzzy', '1xyzzy', 'xyzzy.', '\u00e9xyzzy',
  'I like caf\u00e9 au lait', 'I like cafe\u0301 au lait', 'caf\u00e9caf\u00e9', '  caf\u00e9  ',
  'plugh', ' plugh ', 'a plugh b', 'aplugh b', '\u3000plugh\u3000x', '<mask>[SEP]xyzzy plugh caf\u00e9',
  '<mask>   <mask>', 'a   [SEP]   <mask>   b',
];

// Characters from every Unicode version after 9.0. Hugging Face's NFC uses the Unicode 9.0 tables of the
// unicode-normalization-alignments crate, so it treats these as unassigned: starters that neither reorder nor
// compose. A newer NFC (utf8proc's) would move or merge them: each text puts a new combining mark between a base and
// an older mark it would reorder or let compose (a mark of class below 230 before U+0301, one of 230 or above before
// U+0323), or gives a pair that the newer tables compose. Letters and digits new in 15.1 and 16.0 also stand next
// to older letters, digits and punctuation, where the pre-tokenizer splits differently unless it knows them as
// letters and numbers (model/pretokenize_classes.inc); 17.0's are neither to it yet. With GPT-NeoX's merges the ids
// show the split where a contraction follows ("X's": a letter or number X leaves 's to the contraction; punctuation
// would take the apostrophe), so each version has some.
const unicodeVersionTexts = [
  ['10.0', 'a\u1df6\u0323 a\u1df8\u0323 a\u1df9\u0301 a\u0d3b\u0301 \u0d15\u0d3c\u0d4d a\u{11d42}\u0301 a\u{11a34}\u0301'],
  ['11.0', 'a\u07fd\u0301 \u07ca\u07eb\u07fd a\u08d3\u0301 a\u09fe\u0323 a\u{10f46}\u0301 a\u{1133b}\u0301 a\u{1145e}\u0323'],
  ['12.0', 'a\u0eba\u0301 a\u{119e0}\u0301 a\u{1e130}\u0323 a\u{1e2ec}\u0323'],
  ['12.1', 'a\u32ff\u0301 \u32ff \u3231\u32ff'],  // SQUARE ERA NAME REIWA: a compatibility form only, NFC leaves it
  ['13.0', 'a\u1abf\u0301 a\u{16ff0}\u0301 a\u{10eab}\u0323 a\u{11943}\u0301 \u{11935}\u{11930} \u{11938}'],
  ['14.0', 'a\u1dfa\u0301 a\u1ac1\u0323 a\u0898\u0323 a\u0c3c\u0301 a\u1715\u0301 a\u{1e2ae}\u0323'],
  ['15.0', 'a\u{1e4ec}\u0323 a\u{11f41}\u0301 a\u{1e08f}\u0323 a\u{10efd}\u0301'],
  ['15.1', '\u2ffc\u4e00\u4e8c \u31ef \u{2ebf0} \u{2ee5d}\u{2ebf1} \u4e00\u{2ebf0}! (\u{2ee5d}) a\u{2ebf0}1 ' +
    '\u{2ebf0}\'s x\u{2ee5d}\'ll'],  // CJK Extension I
  ['16.0', 'a\u0897\u0323 a\u{10d69}\u0323 \u{16d67}\u{16d67} \u{16d68} \u{113c2}\u{113c2} \u{1611e}\u{1611e} ' +
    'x\u{10d4a}\u{10d4b}, \u{16d40}\u{16d41}. 7\u{16d70}\u{16d71}% \u{1e5d0}\u{1e5f1}\u{1e5f2} (\u{11bf0}) ' +
    '\u{1ccf0}\u{1ccf9}a \u{11380}\u{11381}" \u{16100}\u{16101}\u{16130} \u{13460}! \u1c89\u1c8a \ua7cb\u{105c0} ' +
    '\u{10d4a}\'s 7\u{16d70}\'t \u{1e5d0}\u{1e5f1}\'re \u{1ccf0}\'ve \u{11380}\'d'],
  ['17.0', 'a\u1ae0\u0323 a\u{1e6e3}\u0301 x\u{1e6c0}y 1\u{1e6f0} \u{1e6c0}\'s'],
];

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function random_cases(rand) {
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const out = [];
  for (let i = 0; i < kRandomCases; ++i) {
    const n = 1 + Math.floor(rand() * 24);
    let s = '';
    for (let j = 0; j < n; ++j) {
      if (i % 4 === 3) {
        const [lo, hi] = pick(ranges);
        s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
      } else {
        s += pick(pieces);
      }
    }
    out.push(s);
  }
  return out;
}

async function run_cases(tokenizer, texts) {
  const cases = [];
  for (const text of texts) {
    const encoding = await tokenizer.encode(text);
    const ids = encoding.getIds();
    const decoded = await tokenizer.decode(ids, false);
    cases.push({ text, ids, decoded });
  }
  return cases;
}

async function main() {
  const tokenizer = Tokenizer.fromFile(kTokenizerPath);
  const rand = mulberry32(kSeed);
  const cases = await run_cases(tokenizer, fixed.concat(random_cases(rand)));

  const variantJson = JSON.parse(fs.readFileSync(kTokenizerPath, 'utf8'));
  variantJson.added_tokens.push(...variantAddedTokens);
  const variant = Tokenizer.fromString(JSON.stringify(variantJson));
  const variantTexts = variantFixed.slice();
  for (let i = 0; i < 100; ++i) {
    let s = '';
    const n = 1 + Math.floor(rand() * 10);
    for (let j = 0; j < n; ++j) s += variantPieces[Math.floor(rand() * variantPieces.length)];
    variantTexts.push(s);
  }
  const variantCases = await run_cases(variant, variantTexts);
  const unicodeCases = [];
  for (const [version, text] of unicodeVersionTexts) {
    // Each piece alone, and all of them together.
    const texts = text.split(' ').concat([text]);
    for (const c of await run_cases(tokenizer, texts)) unicodeCases.push({ unicode: version, ...c });
  }
  const doc = {
    generator: 'tools/tokenizer-cases/gen.js',
    tokenizers_version: require('tokenizers/package.json').version,
    tokenizer: 'data/gpt-neox-tokenizer/tokenizer.json',
    vocab_size: tokenizer.getVocabSize(true),
    variant_added_tokens: variantAddedTokens,
    variant_id_to_token: Object.fromEntries(variantAddedTokens.map((t) => [t.id, variant.idToToken(t.id)])),
  };
  // One case per line keeps diffs readable and the file small.
  const list = (cs) => '[\n' + cs.map((c) => '    ' + JSON.stringify(c)).join(',\n') + '\n  ]';
  const head = JSON.stringify(doc, null, 2).replace(/\n}$/, '');
  const body = ',\n  "cases": ' + list(cases) + ',\n  "variant_cases": ' + list(variantCases) +
    ',\n  "unicode_version_cases": ' + list(unicodeCases) + '\n}\n';
  fs.writeFileSync(kOutPath, head + body);
  console.log(`wrote ${cases.length} + ${variantCases.length} + ${unicodeCases.length} cases to ` +
              path.relative(kRoot, kOutPath));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
