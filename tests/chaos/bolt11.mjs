// Reads the payment hash (tag `p`) out of a BOLT11 invoice, for logs only:
// no checksum or signature check.
const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

export function paymentHashOf(invoice) {
  if (typeof invoice !== "string") return null;
  const s = invoice.toLowerCase();
  const sep = s.lastIndexOf("1");
  if (sep < 1) return null;
  const words = [];
  for (const ch of s.slice(sep + 1, -6)) {
    const v = CHARSET.indexOf(ch);
    if (v < 0) return null;
    words.push(v);
  }
  let i = 7; // timestamp
  while (i + 3 <= words.length) {
    const type = words[i];
    const len = words[i + 1] * 32 + words[i + 2];
    const data = words.slice(i + 3, i + 3 + len);
    if (type === 1 && len === 52) {
      let bits = 0;
      let acc = 0;
      let hex = "";
      for (const w of data) {
        acc = (acc << 5) | w;
        bits += 5;
        while (bits >= 8) {
          bits -= 8;
          hex += ((acc >> bits) & 0xff).toString(16).padStart(2, "0");
        }
        acc &= (1 << bits) - 1;
      }
      return hex.slice(0, 64);
    }
    i += 3 + len;
  }
  return null;
}
