// Tiny PNG encoder (no dependencies) drawing the coloured shapes the tiny CLIP fixture knows
// ("a red circle", "a blue square", ...): see tests/fixtures/clip/README.md.
import { deflateSync } from 'node:zlib';

const COLORS = {
  red: [220, 30, 30],
  green: [30, 160, 50],
  blue: [30, 70, 220],
  yellow: [230, 200, 0],
  purple: [140, 40, 180],
  orange: [250, 130, 0],
};

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** An RGB PNG; `pixel(x, y)` returns [r, g, b]. */
export function png(width, height, pixel) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  let o = 0;
  for (let y = 0; y < height; y++) {
    raw[o++] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y);
      raw[o++] = r;
      raw[o++] = g;
      raw[o++] = b;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A coloured circle or square on a light grey background, as a PNG Buffer. */
export function shape({ color = 'red', kind = 'circle', size = 64, cx = 0.5, cy = 0.5, scale = 0.6, background = 235 } = {}) {
  const fill = COLORS[color];
  const radius = (scale * size) / 2;
  const half = radius / Math.SQRT2;
  return png(size, size, (x, y) => {
    const dx = x + 0.5 - cx * size;
    const dy = y + 0.5 - cy * size;
    const inside = kind === 'circle' ? dx * dx + dy * dy <= radius * radius : Math.abs(dx) <= half && Math.abs(dy) <= half;
    return inside ? fill : [background, background, background];
  });
}
