// MIME types as the Fetch standard reads them from a Content-Type header: parsing
// (https://mimesniff.spec.whatwg.org/#parse-a-mime-type), serializing, and "extract a
// MIME type" (https://fetch.spec.whatwg.org/#concept-header-extract-mime-type). Used by
// the body mixin for `blob()`'s type and `formData()`'s dispatch and boundary; its TOKEN is
// the one HTTP token syntax that headers and methods are checked against too.

export interface MimeType {
  type: string;
  subtype: string;
  /** Parameter names are lowercase; the first occurrence of a name wins. */
  parameters: Map<string, string>;
}

/** @internal An RFC 9110 token: a header name, a method, a MIME type's parts
 * (https://mimesniff.spec.whatwg.org/#http-token-code-point). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// https://mimesniff.spec.whatwg.org/#http-quoted-string-token-code-point
const QUOTED_STRING_TOKEN = /^[\t\x20-\x7e\x80-\xff]*$/;

function isHttpWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function trimHttpWhitespace(s: string, leading: boolean, trailing: boolean): string {
  let start = 0;
  let end = s.length;
  if (leading) while (start < end && isHttpWhitespace(s.charCodeAt(start))) start++;
  if (trailing) while (end > start && isHttpWhitespace(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

/** Position-carrying cursor for the collect-a-sequence steps of the algorithms below. */
interface Cursor {
  pos: number;
}

function collectUntil(input: string, at: Cursor, stop: string): string {
  const start = at.pos;
  while (at.pos < input.length && !stop.includes(input[at.pos])) at.pos++;
  return input.slice(start, at.pos);
}

// https://fetch.spec.whatwg.org/#collect-an-http-quoted-string
function collectQuotedString(input: string, at: Cursor, extractValue: boolean): string {
  const start = at.pos;
  let value = "";
  at.pos++; // the opening quote
  for (;;) {
    value += collectUntil(input, at, '"\\');
    if (at.pos >= input.length) break;
    const quoteOrBackslash = input[at.pos++];
    if (quoteOrBackslash === "\\") {
      if (at.pos >= input.length) {
        value += "\\";
        break;
      }
      value += input[at.pos++];
    } else {
      break;
    }
  }
  return extractValue ? value : input.slice(start, at.pos);
}

// https://mimesniff.spec.whatwg.org/#parse-a-mime-type
export function parseMimeType(input: string): MimeType | null {
  // 1. Remove leading and trailing HTTP whitespace.
  input = trimHttpWhitespace(input, true, true);
  const at: Cursor = { pos: 0 };
  // 3-4. The type: token code points up to "/".
  const type = collectUntil(input, at, "/");
  if (type === "" || !TOKEN.test(type)) return null;
  // 5-6.
  if (at.pos >= input.length) return null;
  at.pos++;
  // 7-9. The subtype, up to ";", trailing whitespace removed.
  const subtype = trimHttpWhitespace(collectUntil(input, at, ";"), false, true);
  if (subtype === "" || !TOKEN.test(subtype)) return null;
  const mime: MimeType = { type: type.toLowerCase(), subtype: subtype.toLowerCase(), parameters: new Map() };
  // 11. Parameters.
  while (at.pos < input.length) {
    at.pos++; // the ";"
    while (at.pos < input.length && isHttpWhitespace(input.charCodeAt(at.pos))) at.pos++;
    const name = collectUntil(input, at, ";=").toLowerCase();
    if (at.pos < input.length) {
      if (input[at.pos] === ";") continue;
      at.pos++; // the "="
    }
    if (at.pos >= input.length) break;
    let value: string;
    if (input[at.pos] === '"') {
      value = collectQuotedString(input, at, true);
      collectUntil(input, at, ";");
    } else {
      value = trimHttpWhitespace(collectUntil(input, at, ";"), false, true);
      if (value === "") continue;
    }
    if (name !== "" && TOKEN.test(name) && QUOTED_STRING_TOKEN.test(value) && !mime.parameters.has(name))
      mime.parameters.set(name, value);
  }
  return mime;
}

export function essence(m: MimeType): string {
  return `${m.type}/${m.subtype}`;
}

// https://mimesniff.spec.whatwg.org/#serialize-a-mime-type
export function serializeMimeType(m: MimeType): string {
  let out = essence(m);
  for (const [name, value] of m.parameters) {
    out += ";" + name + "=";
    if (value === "" || !TOKEN.test(value)) out += '"' + value.replace(/(["\\])/g, "\\$1") + '"';
    else out += value;
  }
  return out;
}

// https://fetch.spec.whatwg.org/#concept-header-list-get-decode-split
function splitHeaderValue(value: string): string[] {
  const at: Cursor = { pos: 0 };
  const values: string[] = [];
  let temporary = "";
  for (;;) {
    temporary += collectUntil(value, at, '",');
    if (at.pos < value.length) {
      if (value[at.pos] === '"') {
        temporary += collectQuotedString(value, at, false);
        if (at.pos < value.length) continue;
      } else {
        at.pos++; // the ","
      }
    }
    values.push(temporary.replace(/^[\t ]+|[\t ]+$/g, ""));
    temporary = "";
    if (at.pos >= value.length) return values;
  }
}

/**
 * https://fetch.spec.whatwg.org/#concept-header-extract-mime-type, given the combined
 * Content-Type value (or null when there is none). Null means failure.
 */
export function extractMimeType(contentType: string | null): MimeType | null {
  if (contentType === null) return null;
  let charset: string | null = null;
  let currentEssence: string | null = null;
  let mime: MimeType | null = null;
  for (const value of splitHeaderValue(contentType)) {
    const temporary = parseMimeType(value);
    if (temporary === null || essence(temporary) === "*/*") continue;
    mime = temporary;
    const e = essence(mime);
    if (e !== currentEssence) {
      charset = mime.parameters.get("charset") ?? null;
      currentEssence = e;
    } else if (!mime.parameters.has("charset") && charset !== null) {
      mime.parameters.set("charset", charset);
    }
  }
  return mime;
}
