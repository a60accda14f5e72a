// Checks model/nfc.h's account of Hugging Face's NFC against tokenizers' own NFC normalizer: for every code point, a
// set of probe strings (the code point alone, between a base and marks of several classes, after a Hangul syllable,
// before a vowel jamo) must normalize exactly as "Node's NFC (ICU, Unicode 15.1 or later) of the pieces between
// code points not assigned in Unicode 9.0, those kept as they are" (the table model/unicode9_assigned.inc).
// Usage: cd tools/tokenizer-cases && npm install && node check_nfc.js     (about 20 s; exits 1 on any difference)
'use strict';

const fs = require('fs');
const path = require('path');
const { nfcNormalizer } = require('tokenizers');

const kTable = path.resolve(__dirname, '..', '..', 'model', 'unicode9_assigned.inc');
const ranges = [...fs.readFileSync(kTable, 'utf8').matchAll(/\{0x([0-9A-F]+), 0x([0-9A-F]+)\}/g)].map((m) => [
  parseInt(m[1], 16),
  parseInt(m[2], 16),
]);

function assignedInUnicode9(cp) {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ranges[mid][0]) hi = mid - 1;
    else if (cp > ranges[mid][1]) lo = mid + 1;
    else return true;
  }
  return false;
}

function expected(s) {
  let out = '';
  let piece = '';
  for (const ch of s) {
    if (assignedInUnicode9(ch.codePointAt(0))) {
      piece += ch;
    } else {
      out += piece.normalize('NFC') + ch;
      piece = '';
    }
  }
  return out + piece.normalize('NFC');
}

const hf = nfcNormalizer();
let probes = 0;
let differ = 0;
for (let cp = 0; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;  // not text
  const c = String.fromCodePoint(cp);
  for (const p of [c, 'a\u0301' + c + '\u0323', c + '\u0301', 'a' + c, c + '\u0323\u0301', '\u1100' + c,
    'e' + c + '\u0300', '\uac00' + c, c + '\u1161', c + '\u0345\u0300\u05b0']) {
    probes++;
    const got = hf.normalizeString(p);
    const want = expected(p);
    if (got !== want && differ++ < 20) {
      console.log(`U+${cp.toString(16)}: ${JSON.stringify(p)} -> tokenizers ${JSON.stringify(got)}, ` +
                  `expected ${JSON.stringify(want)}`);
    }
  }
}
console.log(`${probes} probes (Node's Unicode ${process.versions.unicode}, tokenizers ` +
            `${require('tokenizers/package.json').version}): ${differ} differ`);
process.exit(differ === 0 ? 0 : 1);
