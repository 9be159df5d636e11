// FormData bodies both ways: a streaming multipart/form-data parser with limits
// (https://andreubotella.github.io/multipart-form-data/, RFC 7578), the
// application/x-www-form-urlencoded reader, and the multipart encoder used when a
// FormData is a body (https://html.spec.whatwg.org/#multipart-form-data).

/** Limits applied while parsing a form body; a body over one fails with a TypeError. */
export interface FormDataLimits {
  /** Most parts (multipart) or name/value pairs (urlencoded) in one body. */
  maxParts: number;
  /** Largest value of a part without a filename, in bytes. */
  maxFieldSize: number;
  /** Largest file part, in bytes. */
  maxFileSize: number;
  /** Largest header section of one part, in bytes. */
  maxPartHeaderSize: number;
}

// The defaults: 1000 parts is what PHP allows by default (max_input_vars) and far more
// than real forms send; a 1 MiB text field holds any textarea; files are bounded only by
// the server's maxBodySize (or, for a body built in JS, by what the caller gave us); a
// part's header section gets the same 16 KiB as a request head (maxHeaderSize).
const limits: FormDataLimits = {
  maxParts: 1000,
  maxFieldSize: 1024 * 1024,
  maxFileSize: Infinity,
  maxPartHeaderSize: 16 * 1024,
};

/** The limits now in force. */
export function formDataLimits(): Readonly<FormDataLimits> {
  return { ...limits };
}

/** Changes the limits for every later `formData()` call in this thread. */
export function setFormDataLimits(next: Partial<FormDataLimits>): void {
  for (const key of Object.keys(limits) as (keyof FormDataLimits)[]) {
    const v = next[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || Number.isNaN(v) || v < 0) throw new RangeError(`${key} must be a non-negative number`);
    limits[key] = v;
  }
}

function formError(message: string, code = "ERR_FORM_DATA_INVALID"): TypeError {
  return Object.assign(new TypeError(message), { code });
}

function limitError(message: string): TypeError {
  return formError(message, "ERR_FORM_DATA_LIMIT");
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;

// States of the multipart parser.
const PREAMBLE = 0;
const AFTER_DELIMITER = 1;
const HEADERS = 2;
const BODY = 3;
const END = 4;

interface Part {
  name: string;
  filename: string | null;
  type: string | null;
  base64: boolean;
  chunks: Uint8Array[];
  size: number;
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const CRLF_CRLF = Buffer.from("\r\n\r\n");

/**
 * Parses multipart/form-data from chunks as they arrive. Only the bytes that could still
 * be the start of a delimiter are held back between chunks, so a part's data is not
 * copied before it becomes a File, and a limit fails the body as soon as it is crossed.
 */
export class MultipartParser {
  #delimiter: Buffer;
  #limits: FormDataLimits;
  #state = PREAMBLE;
  /** Unparsed bytes held over from the last chunk (all states but BODY). */
  #pending: Uint8Array | null;
  /** In BODY: the last bytes of a chunk that may begin a delimiter. */
  #tail: Uint8Array | null = null;
  #part: Part | null = null;
  #parts = 0;
  #form = new FormData();

  constructor(boundary: string, limitsNow: FormDataLimits = limits) {
    // RFC 2046 section 5.1.1: 1 to 70 characters; we refuse only what cannot be matched
    // safely (CR, LF, non-ASCII), not every character outside bchars.
    if (boundary.length === 0 || boundary.length > 70 || !/^[\x20-\x7e]+$/.test(boundary))
      throw formError(`Invalid multipart boundary: ${JSON.stringify(boundary)}`);
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
    this.#limits = limitsNow;
    // The first delimiter may open the body without a preceding CRLF: pretend there was one.
    this.#pending = Buffer.from("\r\n");
  }

  write(chunk: Uint8Array): void {
    if (this.#state === END || chunk.byteLength === 0) return;
    let buf = asBuffer(chunk);
    if (this.#tail !== null) {
      const rest = this.#junction(buf);
      if (rest === null) return;
      buf = rest;
    } else if (this.#pending !== null) {
      buf = Buffer.concat([this.#pending, buf]);
      this.#pending = null;
    }
    this.#run(buf);
  }

  /** Ends the input: the entries, or a TypeError when the closing delimiter never came. */
  end(): FormData {
    if (this.#state !== END) throw formError("The multipart body ended before its closing boundary");
    return this.#form;
  }

  // A delimiter may straddle the held-back tail and the new chunk. The delimiter holds
  // one CR (its first byte; a boundary has none), so at most one position in the tail
  // can start it: find it and decide with as many bytes of the chunk as needed.
  #junction(chunk: Buffer): Buffer | null {
    const tail = this.#tail!;
    this.#tail = null;
    const d = this.#delimiter;
    for (let p = 0; p < tail.length; p++) {
      if (tail[p] !== CR) continue;
      const inTail = tail.length - p;
      let i = 1;
      while (i < inTail && tail[p + i] === d[i]) i++;
      if (i < inTail) continue; // mismatch inside the tail
      let j = 0;
      while (i < d.length && j < chunk.length && chunk[j] === d[i]) {
        i++;
        j++;
      }
      if (i === d.length) {
        this.#data(tail.subarray(0, p));
        this.#finishPart();
        this.#state = AFTER_DELIMITER;
        return chunk.subarray(j);
      }
      if (j === chunk.length) {
        // Still a prefix of the delimiter: hold both back.
        this.#data(tail.subarray(0, p));
        this.#tail = Buffer.concat([tail.subarray(p), chunk]);
        return null;
      }
      break; // a mismatch: nothing in the tail starts a delimiter
    }
    this.#data(tail);
    return chunk;
  }

  #run(buf: Buffer): void {
    let pos = 0;
    const d = this.#delimiter;
    for (;;) {
      switch (this.#state) {
        case PREAMBLE: {
          const i = buf.indexOf(d, pos);
          if (i === -1) {
            // Preamble text is ignored; keep only what could start the delimiter.
            this.#pending = buf.subarray(Math.max(pos, buf.length - d.length + 1));
            return;
          }
          pos = i + d.length;
          this.#state = AFTER_DELIMITER;
          break;
        }
        case AFTER_DELIMITER: {
          // "--" closes the body; otherwise optional transport padding, then CRLF.
          let p = pos;
          if (buf.length - p < 2) return this.#hold(buf, pos);
          if (buf[p] === DASH && buf[p + 1] === DASH) {
            this.#state = END;
            return;
          }
          while (p < buf.length && (buf[p] === 0x20 || buf[p] === 0x09)) p++;
          if (buf.length - p < 2) return this.#hold(buf, pos);
          if (buf[p] !== CR || buf[p + 1] !== LF) throw formError("Expected CRLF after a multipart boundary");
          pos = p + 2;
          this.#state = HEADERS;
          break;
        }
        case HEADERS: {
          if (buf.length - pos >= 2 && buf[pos] === CR && buf[pos + 1] === LF)
            throw formError("A multipart part has no Content-Disposition header");
          const i = buf.indexOf(CRLF_CRLF, pos);
          if (i === -1) {
            if (buf.length - pos > this.#limits.maxPartHeaderSize)
              throw limitError(`A multipart part's headers exceed ${this.#limits.maxPartHeaderSize} bytes`);
            return this.#hold(buf, pos);
          }
          if (i - pos > this.#limits.maxPartHeaderSize)
            throw limitError(`A multipart part's headers exceed ${this.#limits.maxPartHeaderSize} bytes`);
          this.#startPart(utf8.decode(buf.subarray(pos, i)));
          pos = i + 4;
          this.#state = BODY;
          break;
        }
        case BODY: {
          const i = buf.indexOf(d, pos);
          if (i === -1) {
            const keep = Math.max(pos, buf.length - d.length + 1);
            this.#data(buf.subarray(pos, keep));
            if (keep < buf.length) this.#tail = buf.subarray(keep);
            return;
          }
          this.#data(buf.subarray(pos, i));
          this.#finishPart();
          pos = i + d.length;
          this.#state = AFTER_DELIMITER;
          break;
        }
        case END:
          return;
      }
    }
  }

  #hold(buf: Buffer, pos: number): void {
    if (pos < buf.length) this.#pending = buf.subarray(pos);
  }

  #startPart(head: string): void {
    if (++this.#parts > this.#limits.maxParts)
      throw limitError(`The form has more than ${this.#limits.maxParts} parts`);
    let name: string | null = null;
    let filename: string | null = null;
    let type: string | null = null;
    let base64 = false;
    for (const line of head.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw formError(`Invalid multipart header line: ${JSON.stringify(line)}`);
      const field = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, "");
      if (field === "content-disposition") {
        const d = parseDisposition(value);
        name = d.name;
        filename = d.filename;
      } else if (field === "content-type") {
        type = value;
      } else if (field === "content-transfer-encoding") {
        base64 = value.toLowerCase() === "base64";
      }
    }
    if (name === null) throw formError("A multipart part has no Content-Disposition name");
    this.#part = { name, filename, type, base64, chunks: [], size: 0 };
  }

  #data(bytes: Uint8Array): void {
    const part = this.#part;
    if (part === null || bytes.byteLength === 0) return;
    part.size += bytes.byteLength;
    if (part.filename !== null) {
      if (part.size > this.#limits.maxFileSize)
        throw limitError(
          `The file in form field ${JSON.stringify(part.name)} exceeds ${this.#limits.maxFileSize} bytes`,
        );
    } else if (part.size > this.#limits.maxFieldSize) {
      throw limitError(`Form field ${JSON.stringify(part.name)} exceeds ${this.#limits.maxFieldSize} bytes`);
    }
    part.chunks.push(bytes);
  }

  #finishPart(): void {
    const part = this.#part;
    if (part === null) return;
    this.#part = null;
    let chunks = part.chunks;
    if (part.base64) chunks = [Buffer.from(Buffer.concat(chunks).toString("latin1"), "base64")];
    if (part.filename !== null) {
      // The part's type, "text/plain" when it has none (RFC 7578 section 4.4), "" when not ASCII.
      let type = part.type ?? "text/plain";
      if (!/^[\x00-\x7f]*$/.test(type)) type = "";
      this.#form.append(part.name, new File(chunks as Uint8Array<ArrayBuffer>[], part.filename, { type }));
    } else {
      this.#form.append(part.name, chunks.length === 1 ? utf8.decode(chunks[0]) : utf8.decode(Buffer.concat(chunks)));
    }
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * The name and filename of `Content-Disposition: form-data; name="…"; filename="…"`.
 * Browsers escape `"`, CR and LF in them as %22, %0D and %0A (HTML's encoding); other
 * clients (curl) escape with a backslash; `filename*=utf-8''…` (RFC 5987) wins over
 * `filename`.
 */
function parseDisposition(value: string): { name: string | null; filename: string | null } {
  const semi = value.indexOf(";");
  const kind = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  if (kind !== "form-data") throw formError(`Expected Content-Disposition form-data, got ${JSON.stringify(value)}`);
  let name: string | null = null;
  let filename: string | null = null;
  let filenameStar: string | null = null;
  let i = semi === -1 ? value.length : semi + 1;
  while (i < value.length) {
    while (i < value.length && (value[i] === " " || value[i] === "\t" || value[i] === ";")) i++;
    const eq = value.indexOf("=", i);
    if (eq === -1) break;
    const key = value.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    while (i < value.length && (value[i] === " " || value[i] === "\t")) i++;
    let v = "";
    if (value[i] === '"') {
      i++;
      while (i < value.length && value[i] !== '"') {
        if (value[i] === "\\" && (value[i + 1] === '"' || value[i + 1] === "\\")) i++;
        v += value[i++];
      }
      if (i >= value.length) throw formError("Unterminated quoted string in Content-Disposition");
      i++;
    } else {
      const end = value.indexOf(";", i);
      v = value.slice(i, end === -1 ? value.length : end).trim();
      i = end === -1 ? value.length : end;
    }
    if (key === "name" && name === null) name = unescapeName(v);
    else if (key === "filename" && filename === null) filename = unescapeName(v);
    else if (key === "filename*" && filenameStar === null) filenameStar = decodeExtValue(v);
  }
  return { name, filename: filenameStar ?? filename };
}

function unescapeName(s: string): string {
  return s.indexOf("%") === -1 ? s : s.replace(/%0A/gi, "\n").replace(/%0D/gi, "\r").replace(/%22/g, '"');
}

// RFC 5987 ext-value: charset'language'percent-encoded; UTF-8 (and its ASCII subset) only.
function decodeExtValue(v: string): string | null {
  const m = /^([^']*)'[^']*'(.*)$/.exec(v);
  if (m === null) return null;
  const charset = m[1].toLowerCase();
  if (charset !== "utf-8" && charset !== "us-ascii") return null;
  try {
    return decodeURIComponent(m[2]);
  } catch {
    return null;
  }
}

/**
 * application/x-www-form-urlencoded into a FormData
 * (https://url.spec.whatwg.org/#concept-urlencoded-parser), with the part-count limit.
 */
export function parseUrlencoded(bytes: Uint8Array): FormData {
  const max = limits.maxParts;
  if (Number.isFinite(max)) {
    const b = asBuffer(bytes);
    let separators = 0;
    for (let i = b.indexOf(0x26); i !== -1; i = b.indexOf(0x26, i + 1)) {
      if (++separators < max) continue;
      // Possibly over: count exactly (empty sequences between "&"s are skipped).
      let fields = 0;
      for (const s of utf8.decode(bytes).split("&")) if (s !== "") fields++;
      if (fields > max) throw limitError(`The form has more than ${max} fields`);
      break;
    }
  }
  const form = new FormData();
  // UTF-8 decode without BOM: a leading BOM stays part of the first name, as specified.
  // URLSearchParams drops a leading "?", which a body keeps; an empty first field does not change the result.
  const text = utf8.decode(bytes);
  for (const [k, v] of new URLSearchParams(text.charCodeAt(0) === 0x3f ? "&" + text : text)) form.append(k, v);
  return form;
}

// https://html.spec.whatwg.org/#multipart/form-data-encoding-algorithm
function escapeName(s: string): string {
  return s.replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22");
}

function normalizeNewlines(s: string): string {
  return s.replace(/\r\n|\r|\n/g, "\r\n");
}

/**
 * A FormData as a multipart/form-data body: a Blob that refers to the entries' Files
 * rather than copying them, so its length is known and it can be read more than once.
 */
export function encodeFormData(form: FormData): { body: Blob; type: string } {
  // 24 random hex digits: no boundary of this shape appears in the data by chance.
  let boundary = "----fetch-rs-";
  for (let i = 0; i < 3; i++)
    boundary += Math.floor(Math.random() * 0x100000000)
      .toString(16)
      .padStart(8, "0");
  const parts: (string | Blob)[] = [];
  for (const [name, value] of form as unknown as Iterable<[string, string | File]>) {
    const disposition = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(normalizeNewlines(name))}"`;
    if (typeof value === "string") {
      parts.push(`${disposition}\r\n\r\n${normalizeNewlines(value)}\r\n`);
    } else {
      const file = value as File;
      parts.push(
        `${disposition}; filename="${escapeName(file.name)}"\r\nContent-Type: ${file.type || "application/octet-stream"}\r\n\r\n`,
        file,
        "\r\n",
      );
    }
  }
  parts.push(`--${boundary}--\r\n`);
  return { body: new Blob(parts), type: `multipart/form-data; boundary=${boundary}` };
}
