// A WebSocket frame as a client sends it (RFC 6455 section 5.2: masked), for the scripts that
// speak WebSocket over raw sockets (scripts/fuzz.mjs, scripts/pgo-train.mjs).
import { randomBytes } from "node:crypto";

/**
 * A masked client frame: `opcode`, `payload` (a string is sent as UTF-8), FIN unless `fin` is
 * false, RSV1 if `rsv1`; `mask` is the 4-byte masking key (random if not given).
 */
export function maskedFrame(opcode, payload, { fin = true, rsv1 = false, mask = randomBytes(4) } = {}) {
  const p = Buffer.from(payload);
  const len = p.length;
  const head = len < 126 ? 6 : len < 65536 ? 8 : 14;
  const frame = Buffer.alloc(head + len);
  frame[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) frame[1] = 0x80 | len;
  else if (len < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  Buffer.from(mask).copy(frame, head - 4);
  for (let i = 0; i < len; i++) frame[head + i] = p[i] ^ mask[i & 3];
  return frame;
}
