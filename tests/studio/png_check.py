#!/usr/bin/env python3
"""Numbers about a PNG written by mole-studio, for tests/studio/test_studio.sh. A small decoder of its own (8-bit
RGB or RGBA, not interlaced: what stb_image_write writes), so the test needs nothing beyond Python.

  png_check.py size FILE                   -> "WIDTH HEIGHT"
  png_check.py std FILE X Y W H            -> standard deviation of the region's pixel values (0 for a flat fill)
  png_check.py diff FILE_A FILE_B X Y W H  -> mean absolute difference of the two images' regions
  png_check.py red FILE X Y W H            -> pixels of the region in the error colour (red well above green, blue)
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, 'rb').read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        sys.exit(f'{path}: not a PNG')
    pos, idat, width = 8, b'', None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            width, height, depth, color, _, _, interlace = struct.unpack('>IIBBBBB', body)
            if depth != 8 or color not in (2, 6) or interlace:
                sys.exit(f'{path}: only 8-bit RGB/RGBA, not interlaced')
            channels = 3 if color == 2 else 4
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(channels, stride):
                cur[i] = (cur[i] + cur[i - channels]) & 255
        elif f == 2:
            for i in range(stride):
                cur[i] = (cur[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = cur[i - channels] if i >= channels else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = cur[i - channels] if i >= channels else 0
                b, c = prev[i], prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(cur)
        prev = cur
    return width, height, channels, rows


def region(img, x, y, w, h):
    width, height, ch, rows = img
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(width, int(x + w)), min(height, int(y + h))
    return [tuple(rows[j][i * ch:i * ch + 3]) for j in range(y0, y1) for i in range(x0, x1)]


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'size':
        w, h, _, _ = read_png(args[0])
        print(w, h)
    elif cmd == 'std':
        px = [v for p in region(read_png(args[0]), *map(float, args[1:5])) for v in p]
        mean = sum(px) / max(len(px), 1)
        print(f'{(sum((v - mean) ** 2 for v in px) / max(len(px), 1)) ** 0.5:.3f}')
    elif cmd == 'diff':
        a = region(read_png(args[0]), *map(float, args[2:6]))
        b = region(read_png(args[1]), *map(float, args[2:6]))
        total = sum(abs(u - v) for p, q in zip(a, b) for u, v in zip(p, q))
        print(f'{total / max(3 * len(a), 1):.3f}')
    elif cmd == 'red':
        px = region(read_png(args[0]), *map(float, args[1:5]))
        print(sum(1 for r, g, b in px if r > 180 and g < 140 and b < 140 and r - g > 80))
    else:
        sys.exit(f'unknown command {cmd}')


main()
