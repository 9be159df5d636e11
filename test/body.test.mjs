// The body mixin (https://fetch.spec.whatwg.org/#body-mixin), shared by Request and
// Response: arrayBuffer, blob, bytes, formData, json, text, the used-body TypeError, and
// the multipart/form-data and urlencoded parsers behind formData(). Behaviours the
// standard fixes run on Node's classes too, as a reference.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Request, Response } from "../dist/index.js";
import { bothImpls } from "./helpers.mjs";
import { formDataLimits, MultipartParser, setFormDataLimits } from "../dist/form-data.js";

const NodeRequest = globalThis.Request;
const NodeResponse = globalThis.Response;
const both = bothImpls(Response, NodeResponse);

/** A body with the given Content-Type. */
function typed(R, body, type) {
  return new R(body, { headers: type === null ? {} : { "content-type": type } });
}

function streamOf(chunks) {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i === chunks.length) return c.close();
      c.enqueue(chunks[i++]);
    },
  });
}

const enc = (s) => new TextEncoder().encode(s);

const BOUNDARY = "----test-boundary-0123456789";
/** A multipart/form-data body from [{ name, value } | { name, filename, type?, value }] parts. */
function multipart(parts, boundary = BOUNDARY) {
  let out = "";
  for (const p of parts) {
    out += `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) out += `; filename="${p.filename}"`;
    out += "\r\n";
    if (p.type !== undefined) out += `Content-Type: ${p.type}\r\n`;
    for (const h of p.headers ?? []) out += h + "\r\n";
    out += `\r\n${p.value}\r\n`;
  }
  return out + `--${boundary}--\r\n`;
}
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** FormData entries as plain data, files read. */
async function entries(form) {
  const out = [];
  for (const [k, v] of form)
    out.push([
      k,
      typeof v === "string" ? v : { name: v.name, type: v.type, text: await v.text(), file: v instanceof File },
    ]);
  return out;
}

describe("text()", () => {
  both("decodes UTF-8", async (R) => {
    assert.equal(await new R(enc("a\u00e9\u4e2d\u{1F600}")).text(), "a\u00e9\u4e2d\u{1F600}");
  });

  both("drops one leading BOM, from bytes and from a string", async (R) => {
    assert.equal(await new R(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])).text(), "a");
    assert.equal(await new R("\uFEFFa").text(), "a");
  });

  // UTF-8 decode removes one BOM; Node's undici removes two, so this runs on ours alone.
  test("drops only the first of two BOMs [fetch-rs]", async () => {
    assert.equal(await new Response("\uFEFF\uFEFFa").text(), "\uFEFFa");
    assert.equal(await new Response(new Uint8Array([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf])).text(), "\uFEFF");
  });

  both("replaces invalid UTF-8 with U+FFFD", async (R) => {
    assert.equal(await new R(new Uint8Array([0x61, 0xff, 0x62])).text(), "a\uFFFDb");
    assert.equal(await new R(new Uint8Array([0xe4, 0xb8])).text(), "\uFFFD");
  });

  both("a string body's lone surrogates become U+FFFD", async (R) => {
    assert.equal(await new R("a\uD800b").text(), "a\uFFFDb");
    assert.equal(await new R("\uDC00").text(), "\uFFFD");
  });

  both("a stream body's chunks are joined before decoding", async (R) => {
    // "é" split across two chunks.
    assert.equal(await new R(streamOf([new Uint8Array([0x61, 0xc3]), new Uint8Array([0xa9])])).text(), "a\u00e9");
  });

  both("a stream chunk that is not a Uint8Array rejects with a TypeError", async (R) => {
    await assert.rejects(new R(streamOf(["string chunk"])).text(), TypeError);
    await assert.rejects(new R(streamOf([new ArrayBuffer(1)])).text(), TypeError);
  });

  both("a stream that errors rejects with its error", async (R) => {
    const boom = new Error("boom");
    const s = new ReadableStream({
      start(c) {
        c.enqueue(enc("x"));
        c.error(boom);
      },
    });
    await assert.rejects(new R(s).text(), (e) => e === boom);
  });
});

describe("json()", () => {
  both("parses, BOM dropped", async (R) => {
    assert.deepEqual(await new R('{"a":1,"b":[true,null]}').json(), { a: 1, b: [true, null] });
    assert.deepEqual(await new R(new Uint8Array([0xef, 0xbb, 0xbf, 0x31])).json(), 1);
    assert.equal(await new R('"str"').json(), "str");
  });

  both("a string body's lone surrogates become U+FFFD, a leading BOM goes", async (R) => {
    assert.equal(await new R('"a\uD800b"').json(), "a\uFFFDb");
    assert.deepEqual(await new R("\uFEFF[1]").json(), [1]);
  });

  both("invalid JSON rejects with a SyntaxError and uses the body", async (R) => {
    const r = new R("{nope");
    await assert.rejects(r.json(), SyntaxError);
    assert.equal(r.bodyUsed, true);
  });
});

describe("arrayBuffer() and bytes()", () => {
  both("give the bytes, as an ArrayBuffer and a plain Uint8Array", async (R) => {
    const ab = await new R(enc("xyz")).arrayBuffer();
    assert.equal(Object.getPrototypeOf(ab), ArrayBuffer.prototype);
    assert.deepEqual([...new Uint8Array(ab)], [120, 121, 122]);
    const u8 = await new R("xyz").bytes();
    assert.equal(Object.getPrototypeOf(u8), Uint8Array.prototype);
    assert.deepEqual([...u8], [120, 121, 122]);
  });

  both("of a Buffer body: a copy, not a view of the Buffer", async (R) => {
    const buf = Buffer.from("pooled");
    const u8 = await new R(buf).bytes();
    u8[0] = 0;
    assert.equal(buf.toString(), "pooled");
    const ab = await new R(buf).arrayBuffer();
    assert.equal(ab.byteLength, 6);
  });

  both("an empty body gives zero bytes", async (R) => {
    assert.equal((await new R("").arrayBuffer()).byteLength, 0);
    assert.equal((await new R(new Uint8Array(0)).bytes()).byteLength, 0);
  });

  both("a multi-chunk stream is joined in order", async (R) => {
    const u8 = await new R(
      streamOf([new Uint8Array([1]), new Uint8Array([2, 3]), new Uint8Array(0), new Uint8Array([4])]),
    ).bytes();
    assert.deepEqual([...u8], [1, 2, 3, 4]);
  });

  // Regression: a byte stream transfers what it is given; enqueuing a pooled Buffer
  // detached Node's shared pool and crashed the next Buffer.from().
  test("reading the stream of a Buffer body leaves Node's Buffer pool usable", async () => {
    const buf = Buffer.from("pool");
    const reader = new Response(buf).body.getReader();
    const { value } = await reader.read();
    assert.deepEqual([...value], [...buf]);
    assert.equal(buf.toString(), "pool");
    assert.equal(Buffer.from("after").toString(), "after");
  });
});

describe("blob()", () => {
  const cases = [
    [null, ""],
    ["text/html", "text/html"],
    ["Text/HTML; Charset=UTF-8", "text/html;charset=utf-8"],
    ['text/plain;charset="utf-8"', "text/plain;charset=utf-8"],
    ["nonsense", ""],
    ["text/html, text/plain", "text/plain"],
    ["text/plain;charset=gbk, text/plain", "text/plain;charset=gbk"],
    ["text/html;charset=gbk, */*", "text/html;charset=gbk"],
    ["application/json", "application/json"],
  ];
  for (const [type, expected] of cases) {
    both(`Content-Type ${JSON.stringify(type)} gives the Blob type ${JSON.stringify(expected)}`, async (R) => {
      const b = await typed(R, new Uint8Array([1, 2]), type).blob();
      assert.equal(b.type, expected);
      assert.equal(b.size, 2);
    });
  }

  both("a string body's Blob is typed text/plain;charset=utf-8", async (R) => {
    assert.equal((await new R("x").blob()).type, "text/plain;charset=utf-8");
  });

  both("a Blob body comes back with its content and type", async (R) => {
    const b = await new R(new Blob(["abc"], { type: "image/png" })).blob();
    assert.equal(b.type, "image/png");
    assert.equal(await b.text(), "abc");
  });

  test("Request.blob() uses the request's Content-Type", async () => {
    const b = await new Request("http://x.test/", {
      method: "POST",
      body: "q",
      headers: { "content-type": "text/csv" },
    }).blob();
    assert.equal(b.type, "text/csv");
    assert.equal(await b.text(), "q");
  });
});

describe("formData(): application/x-www-form-urlencoded", () => {
  both("parses names and values, + and %-escapes decoded", async (R) => {
    const f = await typed(R, "a=1&b=two+words&c=%26%3D%C3%A9&a=3", "application/x-www-form-urlencoded").formData();
    assert.deepEqual(await entries(f), [
      ["a", "1"],
      ["b", "two words"],
      ["c", "&=\u00e9"],
      ["a", "3"],
    ]);
  });

  both("empty sequences are skipped, a name without = has an empty value", async (R) => {
    const f = await typed(R, "&&x&y=&=z&", "application/x-www-form-urlencoded").formData();
    assert.deepEqual(await entries(f), [
      ["x", ""],
      ["y", ""],
      ["", "z"],
    ]);
  });

  both("the essence matches whatever the case and parameters", async (R) => {
    const f = await typed(R, "k=v", "Application/X-WWW-Form-URLEncoded; charset=UTF-8").formData();
    assert.equal(f.get("k"), "v");
  });

  both("a URLSearchParams body round-trips", async (R) => {
    const f = await new R(
      new URLSearchParams([
        ["a b", "c&d"],
        ["é", "="],
      ]),
    ).formData();
    assert.deepEqual(await entries(f), [
      ["a b", "c&d"],
      ["\u00e9", "="],
    ]);
  });

  both("an empty body is an empty form", async (R) => {
    const f = await typed(R, "", "application/x-www-form-urlencoded").formData();
    assert.deepEqual(await entries(f), []);
  });

  test("a leading '?' is part of the first name, as the urlencoded parser says [fetch-rs]", async () => {
    const f = await typed(Response, "?a=1", "application/x-www-form-urlencoded").formData();
    assert.deepEqual(await entries(f), [["?a", "1"]]);
  });
});

describe("formData(): multipart/form-data", () => {
  both("text fields and files", async (R) => {
    const body = multipart([
      { name: "title", value: "Hello, world" },
      { name: "doc", filename: "a.txt", type: "text/markdown", value: "# heading" },
      { name: "title", value: "second" },
    ]);
    const f = await typed(R, body, MULTIPART).formData();
    assert.deepEqual(await entries(f), [
      ["title", "Hello, world"],
      ["doc", { name: "a.txt", type: "text/markdown", text: "# heading", file: true }],
      ["title", "second"],
    ]);
  });

  both("a file part without Content-Type is text/plain", async (R) => {
    const f = await typed(R, multipart([{ name: "f", filename: "x.bin", value: "data" }]), MULTIPART).formData();
    assert.equal(f.get("f").type, "text/plain");
  });

  both("an empty filename still makes a File", async (R) => {
    const f = await typed(
      R,
      multipart([{ name: "f", filename: "", type: "application/octet-stream", value: "" }]),
      MULTIPART,
    ).formData();
    const file = f.get("f");
    assert.ok(file instanceof File);
    assert.equal(file.name, "");
    assert.equal(file.size, 0);
  });

  both("a field's Content-Type does not make it a file", async (R) => {
    const f = await typed(
      R,
      multipart([{ name: "j", type: "application/json", value: '{"a":1}' }]),
      MULTIPART,
    ).formData();
    assert.equal(f.get("j"), '{"a":1}');
  });

  both("values keep CRLFs, dashes and near-boundaries inside them", async (R) => {
    const tricky = `line1\r\nline2\r\n--not-the-boundary\r\n--${BOUNDARY.slice(0, -1)}\r\n`;
    const f = await typed(
      R,
      multipart([
        { name: "t", value: tricky },
        { name: "u", value: "" },
      ]),
      MULTIPART,
    ).formData();
    assert.equal(f.get("t"), tricky);
    assert.equal(f.get("u"), "");
  });

  both("binary file content is byte-exact", async (R) => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    const head = enc(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="bin"; filename="b"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = enc(`\r\n--${BOUNDARY}--\r\n`);
    const body = new Uint8Array(head.length + bytes.length + tail.length);
    body.set(head);
    body.set(bytes, head.length);
    body.set(tail, head.length + bytes.length);
    const file = (await typed(R, body, MULTIPART).formData()).get("bin");
    assert.deepEqual([...new Uint8Array(await file.arrayBuffer())], [...bytes]);
  });

  both("names and filenames are UTF-8; %22, %0D, %0A are unescaped", async (R) => {
    const body = multipart([
      { name: "caf\u00e9", value: "\u4e2d\u6587" },
      { name: "q%22uote", filename: "new%0D%0Aline.txt", value: "x" },
    ]);
    const f = await typed(R, body, MULTIPART).formData();
    assert.equal(f.get("caf\u00e9"), "\u4e2d\u6587");
    assert.equal(f.get('q"uote').name, "new\r\nline.txt");
  });

  both("a quoted boundary parameter and other parameters", async (R) => {
    const body = multipart([{ name: "a", value: "1" }], "quoted:boundary");
    const f = await typed(R, body, 'multipart/form-data; charset=utf-8; boundary="quoted:boundary"').formData();
    assert.equal(f.get("a"), "1");
  });

  // RFC 2046 section 5.1.1 allows a preamble before the first delimiter and an epilogue
  // after the last (busboy accepts both); Node's undici refuses them, so ours alone.
  test("a preamble and an epilogue are ignored [fetch-rs]", async () => {
    const body = "preamble text\r\n" + multipart([{ name: "a", value: "1" }]) + "epilogue";
    const f = await typed(Response, body, MULTIPART).formData();
    assert.deepEqual(await entries(f), [["a", "1"]]);
  });

  both("header names are case-insensitive", async (R) => {
    const body = `--${BOUNDARY}\r\ncontent-disposition: form-data; name="a"; filename="f"\r\ncontent-type: text/x\r\n\r\nv\r\n--${BOUNDARY}--\r\n`;
    const file = (await typed(R, body, MULTIPART).formData()).get("a");
    assert.equal(file.type, "text/x");
  });

  both("the closing delimiter needs no CRLF after it", async (R) => {
    const body = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${BOUNDARY}--`;
    assert.equal((await typed(R, body, MULTIPART).formData()).get("a"), "1");
  });

  both("a body with only the closing delimiter is an empty form", async (R) => {
    assert.deepEqual(await entries(await typed(R, `--${BOUNDARY}--\r\n`, MULTIPART).formData()), []);
  });

  const malformed = [
    ["an empty body", ""],
    ["no closing delimiter", `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n`],
    ["a part cut short", `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1`],
    ["headers cut short", `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"`],
    ["no delimiter at all", "just text"],
    ["a part without a name", `--${BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\n1\r\n--${BOUNDARY}--\r\n`],
    ["a part without headers", `--${BOUNDARY}\r\n\r\n1\r\n--${BOUNDARY}--\r\n`],
    [
      "a delimiter not followed by CRLF",
      `--${BOUNDARY}X\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${BOUNDARY}--\r\n`,
    ],
  ];
  for (const [label, body] of malformed) {
    both(`${label} rejects with a TypeError`, async (R) => {
      await assert.rejects(typed(R, body, MULTIPART).formData(), TypeError);
    });
  }

  both("a multipart type without a boundary rejects with a TypeError", async (R) => {
    await assert.rejects(typed(R, multipart([{ name: "a", value: "1" }]), "multipart/form-data").formData(), TypeError);
  });

  test("Content-Disposition in other clients' shapes: unquoted, backslash-escaped, filename* [fetch-rs]", async () => {
    const parts = [
      `Content-Disposition: form-data; name=plain\r\n\r\nv1`,
      `Content-Disposition: form-data; filename="a\\"b.txt"; name="esc"\r\n\r\nv2`,
      `Content-Disposition: form-data; name="star"; filename="fallback.txt"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\nv3`,
      `Content-Disposition: form-data;name="tight";filename="t.txt"\r\n\r\nv4`,
    ];
    const body = parts.map((p) => `--${BOUNDARY}\r\n${p}\r\n`).join("") + `--${BOUNDARY}--\r\n`;
    const f = await typed(Response, body, MULTIPART).formData();
    assert.equal(f.get("plain"), "v1");
    assert.equal(f.get("esc").name, 'a"b.txt');
    assert.equal(f.get("star").name, "\u20ac rates.txt");
    assert.equal(f.get("tight").name, "t.txt");
  });

  test("a part with Content-Transfer-Encoding: base64 is decoded [fetch-rs]", async () => {
    const body = multipart([
      {
        name: "b",
        filename: "b.txt",
        headers: ["Content-Transfer-Encoding: base64"],
        value: Buffer.from("decoded!").toString("base64"),
      },
    ]);
    assert.equal(await (await typed(Response, body, MULTIPART).formData()).get("b").text(), "decoded!");
  });

  test("a disposition other than form-data rejects with a TypeError [fetch-rs]", async () => {
    const body = `--${BOUNDARY}\r\nContent-Disposition: attachment; name="a"\r\n\r\n1\r\n--${BOUNDARY}--\r\n`;
    await assert.rejects(typed(Response, body, MULTIPART).formData(), TypeError);
  });
});

describe("formData(): the streaming multipart parser", () => {
  const body = enc(
    "preamble\r\n" +
      multipart([
        { name: "a", value: "alpha\r\n--almost" },
        { name: "f", filename: "f.txt", type: "text/plain", value: "file\rcontent\n" },
        { name: "empty", value: "" },
      ]),
  );
  const expected = [
    ["a", "alpha\r\n--almost"],
    ["f", { name: "f.txt", type: "text/plain", text: "file\rcontent\n", file: true }],
    ["empty", ""],
  ];

  test("gives the same entries for a body split at every byte offset", async () => {
    for (let cut = 1; cut < body.length; cut++) {
      const f = await typed(Response, streamOf([body.slice(0, cut), body.slice(cut)]), MULTIPART).formData();
      assert.deepEqual(await entries(f), expected, `split at ${cut}`);
    }
  });

  test("gives the same entries fed one byte at a time", async () => {
    const chunks = [...body].map((b) => new Uint8Array([b]));
    assert.deepEqual(await entries(await typed(Response, streamOf(chunks), MULTIPART).formData()), expected);
  });

  test("gives the same entries in three-byte chunks (a delimiter across several)", async () => {
    const chunks = [];
    for (let i = 0; i < body.length; i += 3) chunks.push(body.slice(i, i + 3));
    assert.deepEqual(await entries(await typed(Response, streamOf(chunks), MULTIPART).formData()), expected);
  });

  test("agrees with Node's parser on 300 random forms cut into random chunks", async () => {
    // A fixed-seed generator, so a failure can be replayed.
    let seed = 20240601;
    const rnd = (n) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = ["a", "\r", "\n", "-", "--", "\r\n", "\r\n--", "é", "\u4e2d", " "];
    for (let iter = 0; iter < 300; iter++) {
      const form = new FormData();
      for (let i = rnd(4); i > 0; i--) {
        let v = "";
        for (let j = rnd(12); j > 0; j--) v += alphabet[rnd(alphabet.length)];
        if (rnd(2)) form.append(`n${i}`, v);
        else form.append(`f${i}`, new File([v], `file${i}.txt`, { type: rnd(2) ? "text/x" : "" }));
      }
      const encoded = new NodeResponse(form);
      const type = encoded.headers.get("content-type");
      const bytes = new Uint8Array(await encoded.arrayBuffer());
      const chunks = [];
      for (let p = 0; p < bytes.length;) {
        const n = 1 + rnd(20);
        chunks.push(bytes.slice(p, p + n));
        p += n;
      }
      const ours = await typed(Response, streamOf(chunks), type).formData();
      const reference = await typed(NodeResponse, bytes, type).formData();
      assert.deepEqual(await entries(ours), await entries(reference), `form ${iter}`);
    }
  });

  test("the parser's write/end interface", () => {
    const p = new MultipartParser("b");
    p.write(enc('--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n'));
    p.write(enc("12"));
    p.write(enc("3\r\n--"));
    p.write(enc("b--"));
    assert.equal(p.end().get("x"), "123");
    const q = new MultipartParser("b");
    q.write(enc("--b\r\n"));
    assert.throws(() => q.end(), TypeError);
  });

  for (const bad of ["", "a\r\nb", "x".repeat(71), "\u00e9"]) {
    test(`boundary ${JSON.stringify(bad.length > 10 ? bad.slice(0, 5) + "…" : bad)} is refused with a TypeError`, () => {
      assert.throws(() => new MultipartParser(bad), TypeError);
    });
  }
});

describe("formData(): limits", () => {
  const saved = formDataLimits();
  const withLimits = async (limits, fn) => {
    setFormDataLimits(limits);
    try {
      await fn();
    } finally {
      setFormDataLimits(saved);
    }
  };

  test("the defaults", () => {
    assert.deepEqual(saved, {
      maxParts: 1000,
      maxFieldSize: 1024 * 1024,
      maxFileSize: Infinity,
      maxPartHeaderSize: 16 * 1024,
    });
  });

  test("more parts than maxParts rejects with ERR_FORM_DATA_LIMIT; exactly maxParts is fine", async () => {
    await withLimits({ maxParts: 3 }, async () => {
      const parts = (n) => Array.from({ length: n }, (_, i) => ({ name: `p${i}`, value: String(i) }));
      assert.equal([...(await typed(Response, multipart(parts(3)), MULTIPART).formData())].length, 3);
      await assert.rejects(typed(Response, multipart(parts(4)), MULTIPART).formData(), {
        name: "TypeError",
        code: "ERR_FORM_DATA_LIMIT",
      });
    });
  });

  test("the default part limit stops a flood of empty parts", async () => {
    const many = Array.from({ length: 1001 }, () => ({ name: "x", value: "" }));
    await assert.rejects(typed(Response, multipart(many), MULTIPART).formData(), { code: "ERR_FORM_DATA_LIMIT" });
  });

  test("a text field over maxFieldSize rejects; a file of that size does not", async () => {
    await withLimits({ maxFieldSize: 10 }, async () => {
      await assert.rejects(typed(Response, multipart([{ name: "t", value: "x".repeat(11) }]), MULTIPART).formData(), {
        code: "ERR_FORM_DATA_LIMIT",
      });
      assert.equal(
        (await typed(Response, multipart([{ name: "t", value: "x".repeat(10) }]), MULTIPART).formData()).get("t"),
        "x".repeat(10),
      );
      const f = await typed(
        Response,
        multipart([{ name: "f", filename: "f", value: "x".repeat(100) }]),
        MULTIPART,
      ).formData();
      assert.equal(f.get("f").size, 100);
    });
  });

  test("a file over maxFileSize rejects", async () => {
    await withLimits({ maxFileSize: 50 }, async () => {
      await assert.rejects(
        typed(Response, multipart([{ name: "f", filename: "f", value: "x".repeat(51) }]), MULTIPART).formData(),
        { code: "ERR_FORM_DATA_LIMIT" },
      );
    });
  });

  test("part headers over maxPartHeaderSize reject", async () => {
    await withLimits({ maxPartHeaderSize: 100 }, async () => {
      const body = multipart([{ name: "a", headers: [`X-Pad: ${"p".repeat(200)}`], value: "1" }]);
      await assert.rejects(typed(Response, body, MULTIPART).formData(), { code: "ERR_FORM_DATA_LIMIT" });
    });
  });

  test("a limit stops reading the stream: the rest is cancelled, not buffered", async () => {
    await withLimits({ maxFileSize: 1000 }, async () => {
      let pulls = 0;
      let cancelled = null;
      const head = enc(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n`);
      const stream = new ReadableStream({
        pull(c) {
          pulls++;
          c.enqueue(pulls === 1 ? head : new Uint8Array(600));
        },
        cancel(reason) {
          cancelled = reason;
        },
      });
      await assert.rejects(typed(Response, stream, MULTIPART).formData(), { code: "ERR_FORM_DATA_LIMIT" });
      assert.ok(pulls <= 4, `pulled ${pulls} chunks`);
      assert.equal(cancelled?.code, "ERR_FORM_DATA_LIMIT");
    });
  });

  test("urlencoded bodies obey maxParts too", async () => {
    await withLimits({ maxParts: 2 }, async () => {
      assert.equal([...(await typed(Response, "a=1&&b=2&", "application/x-www-form-urlencoded").formData())].length, 2);
      await assert.rejects(typed(Response, "a=1&b=2&c=3", "application/x-www-form-urlencoded").formData(), {
        code: "ERR_FORM_DATA_LIMIT",
      });
    });
  });

  test("setFormDataLimits refuses nonsense", () => {
    assert.throws(() => setFormDataLimits({ maxParts: -1 }), RangeError);
    assert.throws(() => setFormDataLimits({ maxFieldSize: NaN }), RangeError);
    assert.deepEqual(formDataLimits(), saved);
  });
});

describe("formData(): other types", () => {
  for (const type of [null, "text/plain", "application/json", "multipart/mixed; boundary=x", "form-data"]) {
    both(`Content-Type ${JSON.stringify(type)} rejects with a TypeError`, async (R) => {
      await assert.rejects(typed(R, "a=1", type).formData(), TypeError);
    });
  }

  both("a failed formData() still uses the body", async (R) => {
    const r = typed(R, "a=1", "text/plain");
    await assert.rejects(r.formData(), TypeError);
    assert.equal(r.bodyUsed, true);
    await assert.rejects(r.text(), TypeError);
  });
});

describe("the used-body TypeError, on Request and Response alike", () => {
  const METHODS = ["arrayBuffer", "blob", "bytes", "formData", "json", "text"];
  // "1" is both JSON and a urlencoded form, so every method can read it.
  const init = { headers: { "content-type": "application/x-www-form-urlencoded" } };
  const makers = [
    ["Response [fetch-rs]", () => new Response("1", init)],
    ["Response [node]", () => new NodeResponse("1", init)],
    ["Request [fetch-rs]", () => new Request("http://x.test/", { method: "POST", body: "1", ...init })],
    ["Request [node]", () => new NodeRequest("http://x.test/", { method: "POST", body: "1", ...init })],
  ];
  for (const [label, make] of makers) {
    for (const first of METHODS) {
      test(`${label}: after ${first}(), every method rejects with a TypeError`, async () => {
        const r = make();
        await r[first]();
        assert.equal(r.bodyUsed, true);
        for (const m of METHODS) await assert.rejects(r[m](), TypeError, `${first} then ${m}`);
      });
    }
    test(`${label}: two reads started together: the second rejects`, async () => {
      const r = make();
      const a = r.text();
      const b = r.text();
      assert.equal(await a, "1");
      await assert.rejects(b, TypeError);
    });
  }
});
