// Request against the Fetch standard (https://fetch.spec.whatwg.org/#request-class),
// constructed ones on fetch-rs's class and on Node's own (undici) as a reference, then
// incoming ones over a real socket.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Headers, Request, Response } from "../dist/index.js";
import { IDL, bothImpls, raw, start } from "./helpers.mjs";

// Captured before any server exists (a Server may install ours as the globals).
const NodeRequest = globalThis.Request;
const NodeHeaders = globalThis.Headers;
const NodeResponse = globalThis.Response;
const both = bothImpls(Request, NodeRequest);

const URL_ = "http://example.test/path?q=1";

function streamOf(...chunks) {
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(new TextEncoder().encode(chunk));
      c.close();
    },
  });
}

test("the class under test is not Node's", () => {
  assert.notEqual(Request, NodeRequest);
});

describe("input", () => {
  both("a string URL is parsed and serialized", (R) => {
    assert.equal(new R("HTTP://Example.TEST:80/a/../b?x#frag").url, "http://example.test/b?x#frag");
    assert.equal(new R("http://example.test").url, "http://example.test/");
  });

  both("a URL object", (R) => {
    assert.equal(new R(new URL("https://x.test/p?q#f")).url, "https://x.test/p?q#f");
  });

  both("an object with toString", (R) => {
    assert.equal(new R({ toString: () => "http://to.string/" }).url, "http://to.string/");
  });

  for (const rel of ["/relative", "relative", "?q", "#f", "//host/path", ""]) {
    both(`relative URL ${JSON.stringify(rel)}: TypeError, there is no base URL on a server`, (R) => {
      assert.throws(() => new R(rel), TypeError);
    });
  }

  for (const bad of ["http://", "http://exa mple.test/", "://x", "http://[::1/"]) {
    both(`invalid URL ${JSON.stringify(bad)} is a TypeError`, (R) => {
      assert.throws(() => new R(bad), TypeError);
    });
  }

  both("a URL with credentials is a TypeError", (R) => {
    assert.throws(() => new R("http://user:pass@example.test/"), TypeError);
    assert.throws(() => new R("http://user@example.test/"), TypeError);
  });

  both("no argument is a TypeError", (R) => {
    assert.throws(() => new R(), TypeError);
  });

  both("an init that is not an object is a TypeError", (R) => {
    assert.throws(() => new R(URL_, 5), TypeError);
    assert.throws(() => new R(URL_, "x"), TypeError);
  });

  both("null and undefined inits are empty", (R) => {
    assert.equal(new R(URL_, null).method, "GET");
    assert.equal(new R(URL_, undefined).method, "GET");
  });
});

describe("defaults", () => {
  both("every attribute of a plain GET", (R) => {
    const r = new R(URL_);
    assert.equal(r.method, "GET");
    assert.equal(r.url, URL_);
    assert.deepEqual([...r.headers], []);
    assert.equal(r.body, null);
    assert.equal(r.bodyUsed, false);
    assert.equal(r.destination, "");
    assert.equal(r.referrer, "about:client");
    assert.equal(r.referrerPolicy, "");
    assert.equal(r.mode, "cors");
    assert.equal(r.credentials, "same-origin");
    assert.equal(r.cache, "default");
    assert.equal(r.redirect, "follow");
    assert.equal(r.integrity, "");
    assert.equal(r.keepalive, false);
    assert.equal(r.isReloadNavigation, false);
    assert.equal(r.isHistoryNavigation, false);
    assert.equal(r.duplex, "half");
    assert.ok(r.signal instanceof AbortSignal);
    assert.equal(r.signal.aborted, false);
  });
});

describe("method", () => {
  for (const m of ["get", "Get", "head", "post", "put", "delete", "options"]) {
    both(`${JSON.stringify(m)} is normalized to ${m.toUpperCase()}`, (R) => {
      assert.equal(new R(URL_, { method: m }).method, m.toUpperCase());
    });
  }

  for (const m of ["patch", "Patch", "custom", "PROPFIND", "M-SEARCH"]) {
    both(`${JSON.stringify(m)} is kept as given`, (R) => {
      assert.equal(new R(URL_, { method: m }).method, m);
    });
  }

  for (const m of ["CONNECT", "connect", "TRACE", "trace", "TRACK", "Track"]) {
    both(`forbidden method ${m} is a TypeError`, (R) => {
      assert.throws(() => new R(URL_, { method: m }), TypeError);
    });
  }

  for (const m of ["", "GE T", "GET\n", "(GET)", "G\u00c9T", "GET,POST"]) {
    both(`invalid method ${JSON.stringify(m)} is a TypeError`, (R) => {
      assert.throws(() => new R(URL_, { method: m }), TypeError);
    });
  }
});

describe("headers", () => {
  both("from init, as a record, pairs or Headers", (R) => {
    assert.equal(new R(URL_, { headers: { "X-A": "1" } }).headers.get("x-a"), "1");
    assert.equal(new R(URL_, { headers: [["x-b", "2"]] }).headers.get("x-b"), "2");
    assert.equal(new R(URL_, { headers: new NodeHeaders({ "x-c": "3" }) }).headers.get("x-c"), "3");
    assert.equal(new R(URL_, { headers: new Headers({ "x-d": "4" }) }).headers.get("x-d"), "4");
  });

  both("invalid header init is a TypeError", (R) => {
    assert.throws(() => new R(URL_, { headers: { "a b": "1" } }), TypeError);
    assert.throws(() => new R(URL_, { headers: [["a", "x\ry"]] }), TypeError);
    assert.throws(() => new R(URL_, { headers: [["a"]] }), TypeError);
    assert.throws(() => new R(URL_, { headers: null }), TypeError);
  });

  both("a constructed request's headers are mutable and its own", (R) => {
    const init = { "x-a": "1" };
    const r = new R(URL_, { headers: init });
    r.headers.set("x-a", "2");
    assert.equal(r.headers.get("x-a"), "2");
    assert.equal(init["x-a"], "1");
    assert.equal(r.headers, r.headers);
  });
});

describe("body", () => {
  const kinds = [
    ["a string", () => "text", "text/plain;charset=UTF-8", "text"],
    [
      "URLSearchParams",
      () => new URLSearchParams("a=1&b=2"),
      "application/x-www-form-urlencoded;charset=UTF-8",
      "a=1&b=2",
    ],
    ["a Blob with a type", () => new Blob(["blob"], { type: "application/x-test" }), "application/x-test", "blob"],
    ["bytes", () => new Uint8Array([104, 105]), null, "hi"],
    ["an ArrayBuffer", () => new Uint8Array([104, 105]).buffer, null, "hi"],
  ];
  for (const [label, make, type, text] of kinds) {
    both(`${label}: Content-Type ${type ?? "none"} and the content`, async (R) => {
      const r = new R(URL_, { method: "POST", body: make() });
      assert.equal(r.headers.get("content-type"), type);
      assert.ok(r.body instanceof ReadableStream);
      assert.equal(await r.text(), text);
      assert.equal(r.bodyUsed, true);
    });
  }

  both("FormData: a multipart body with its boundary, not a stream that needs duplex", async (R) => {
    const form = new FormData();
    form.append("k", "v");
    const r = new R(URL_, { method: "POST", body: form });
    assert.match(r.headers.get("content-type"), /^multipart\/form-data; boundary=/);
    assert.equal((await r.formData()).get("k"), "v");
  });

  both("a Content-Type in init wins", (R) => {
    assert.equal(
      new R(URL_, { method: "POST", body: "x", headers: { "content-type": "text/csv" } }).headers.get("content-type"),
      "text/csv",
    );
  });

  for (const method of ["GET", "HEAD", "get", "head"]) {
    both(`${method} with a body is a TypeError, even an empty one`, (R) => {
      assert.throws(() => new R(URL_, { method, body: "x" }), TypeError);
      assert.throws(() => new R(URL_, { method, body: "" }), TypeError);
      assert.throws(() => new R(URL_, { body: "x" }), TypeError);
    });
  }

  both("GET with a null or undefined body is fine", (R) => {
    assert.equal(new R(URL_, { body: null }).body, null);
    assert.equal(new R(URL_, { body: undefined }).body, null);
  });

  both("a ReadableStream body needs duplex: 'half'", async (R) => {
    assert.throws(() => new R(URL_, { method: "POST", body: streamOf("x") }), TypeError);
    const r = new R(URL_, { method: "POST", body: streamOf("str", "eam"), duplex: "half" });
    assert.equal(r.duplex, "half");
    assert.equal(await r.text(), "stream");
  });

  both("duplex other than 'half' is a TypeError", (R) => {
    assert.throws(() => new R(URL_, { method: "POST", body: "x", duplex: "full" }), TypeError);
    assert.throws(() => new R(URL_, { duplex: "" }), TypeError);
  });

  both("a locked or read stream is a TypeError", (R) => {
    const locked = streamOf("x");
    locked.getReader();
    assert.throws(() => new R(URL_, { method: "POST", body: locked, duplex: "half" }), TypeError);
  });

  both("keepalive with a stream body is a TypeError", (R) => {
    assert.throws(
      () => new R(URL_, { method: "POST", body: streamOf("x"), duplex: "half", keepalive: true }),
      TypeError,
    );
    assert.equal(new R(URL_, { method: "POST", body: "x", keepalive: true }).keepalive, true);
  });

  both("a stream body in no-cors mode is a TypeError", (R) => {
    assert.throws(
      () => new R(URL_, { method: "POST", mode: "no-cors", body: streamOf("x"), duplex: "half" }),
      TypeError,
    );
  });

  both("body methods read it; a second read rejects with a TypeError", async (R) => {
    const r = new R(URL_, { method: "POST", body: '{"a":1}' });
    assert.deepEqual(await r.json(), { a: 1 });
    await assert.rejects(r.text(), TypeError);
    await assert.rejects(r.arrayBuffer(), TypeError);
  });

  both("bytes() and blob()", async (R) => {
    const r = new R(URL_, { method: "PUT", body: "xy", headers: { "content-type": "text/x" } });
    const b = await r.clone().blob();
    assert.equal(b.type, "text/x");
    assert.deepEqual([...(await r.bytes())], [120, 121]);
  });
});

describe("options", () => {
  const enums = {
    mode: ["same-origin", "no-cors", "cors"],
    credentials: ["omit", "same-origin", "include"],
    cache: ["default", "no-store", "reload", "no-cache", "force-cache"],
    redirect: ["follow", "error", "manual"],
    referrerPolicy: [
      "",
      "no-referrer",
      "no-referrer-when-downgrade",
      "same-origin",
      "origin",
      "strict-origin",
      "origin-when-cross-origin",
      "strict-origin-when-cross-origin",
      "unsafe-url",
    ],
  };
  for (const [member, values] of Object.entries(enums)) {
    both(`${member}: every valid value is kept`, (R) => {
      for (const v of values) assert.equal(new R(URL_, { [member]: v })[member], v, v);
    });
    both(`${member}: an invalid value is a TypeError`, (R) => {
      assert.throws(() => new R(URL_, { [member]: "bogus" }), TypeError);
      assert.throws(() => new R(URL_, { [member]: values[0].toUpperCase() + "x" }), TypeError);
    });
  }

  both("mode 'navigate' is a TypeError", (R) => {
    assert.throws(() => new R(URL_, { mode: "navigate" }), TypeError);
  });

  both("cache 'only-if-cached' needs mode 'same-origin'", (R) => {
    assert.throws(() => new R(URL_, { cache: "only-if-cached" }), TypeError);
    assert.throws(() => new R(URL_, { cache: "only-if-cached", mode: "cors" }), TypeError);
    assert.equal(new R(URL_, { cache: "only-if-cached", mode: "same-origin" }).cache, "only-if-cached");
  });

  both("no-cors allows only GET, HEAD and POST", (R) => {
    for (const method of ["GET", "HEAD", "POST"])
      assert.equal(new R(URL_, { mode: "no-cors", method }).mode, "no-cors");
    for (const method of ["PUT", "DELETE", "PATCH"])
      assert.throws(() => new R(URL_, { mode: "no-cors", method }), TypeError, method);
  });

  both("referrer: a URL, '' for none, about:client for the client", (R) => {
    assert.equal(new R(URL_, { referrer: "http://ref.test/page" }).referrer, "http://ref.test/page");
    assert.equal(new R(URL_, { referrer: "" }).referrer, "");
    assert.equal(new R(URL_, { referrer: "about:client" }).referrer, "about:client");
  });

  both("referrer: a relative or invalid URL is a TypeError", (R) => {
    assert.throws(() => new R(URL_, { referrer: "/relative" }), TypeError);
    assert.throws(() => new R(URL_, { referrer: "http://" }), TypeError);
  });

  both("integrity is a string; keepalive a boolean", (R) => {
    assert.equal(new R(URL_, { integrity: "sha256-abc" }).integrity, "sha256-abc");
    assert.equal(new R(URL_, { integrity: 5 }).integrity, "5");
    assert.equal(new R(URL_, { keepalive: 1 }).keepalive, true);
    assert.equal(new R(URL_, { keepalive: 0 }).keepalive, false);
  });

  both("window other than null is a TypeError", (R) => {
    assert.throws(() => new R(URL_, { window: {} }), TypeError);
    assert.throws(() => new R(URL_, { window: 1 }), TypeError);
    assert.equal(new R(URL_, { window: null }).url, URL_);
  });

  both("priority accepts high, low and auto", (R) => {
    for (const priority of ["high", "low", "auto"]) assert.equal(new R(URL_, { priority }).url, URL_);
  });

  // RequestPriority is a WebIDL enum, so another value is a TypeError; Node's undici
  // does not check it, so this runs on ours alone.
  test("priority other than high, low or auto is a TypeError [fetch-rs]", () => {
    assert.throws(() => new Request(URL_, { priority: "urgent" }), TypeError);
  });
});

describe("signal", () => {
  both("follows init's signal, with its reason; it is a different object", (R) => {
    const c = new AbortController();
    const r = new R(URL_, { signal: c.signal });
    assert.notEqual(r.signal, c.signal);
    assert.equal(r.signal.aborted, false);
    c.abort("why");
    assert.equal(r.signal.aborted, true);
    assert.equal(r.signal.reason, "why");
  });

  both("an already aborted signal gives an aborted request", (R) => {
    const r = new R(URL_, { signal: AbortSignal.abort("early") });
    assert.equal(r.signal.aborted, true);
    assert.equal(r.signal.reason, "early");
  });

  both("a signal that is not an AbortSignal is a TypeError; null is none", (R) => {
    assert.throws(() => new R(URL_, { signal: {} }), TypeError);
    assert.throws(() => new R(URL_, { signal: new AbortController() }), TypeError);
    assert.equal(new R(URL_, { signal: null }).signal.aborted, false);
  });

  both("a request made from another follows its signal, unless init replaces it", (R) => {
    const c = new AbortController();
    const a = new R(URL_, { signal: c.signal });
    const b = new R(a);
    const d = new R(a, { signal: null });
    c.abort();
    assert.equal(b.signal.aborted, true);
    assert.equal(d.signal.aborted, false);
  });

  both("a clone follows the original's signal", (R) => {
    const c = new AbortController();
    const a = new R(URL_, { signal: c.signal });
    const b = a.clone();
    assert.notEqual(b.signal, a.signal);
    c.abort();
    assert.equal(b.signal.aborted, true);
  });
});

describe("new Request(request, init)", () => {
  both("copies method, url, headers and options", (R) => {
    const a = new R(URL_, {
      method: "PUT",
      headers: { "x-a": "1" },
      cache: "no-store",
      credentials: "omit",
      redirect: "manual",
      integrity: "i",
      referrerPolicy: "origin",
      mode: "same-origin",
    });
    const b = new R(a);
    assert.equal(b.method, "PUT");
    assert.equal(b.url, URL_);
    assert.equal(b.headers.get("x-a"), "1");
    assert.equal(b.cache, "no-store");
    assert.equal(b.credentials, "omit");
    assert.equal(b.redirect, "manual");
    assert.equal(b.integrity, "i");
    assert.equal(b.referrerPolicy, "origin");
    assert.equal(b.mode, "same-origin");
    b.headers.set("x-a", "2");
    assert.equal(a.headers.get("x-a"), "1");
  });

  both("init overrides, and a non-empty init resets referrer and its policy", (R) => {
    const a = new R(URL_, {
      method: "POST",
      headers: { "x-a": "1" },
      referrer: "http://ref.test/",
      referrerPolicy: "origin",
    });
    assert.equal(new R(a).referrer, "http://ref.test/");
    const b = new R(a, { method: "DELETE", headers: { "x-b": "2" } });
    assert.equal(b.method, "DELETE");
    assert.equal(b.headers.get("x-a"), null);
    assert.equal(b.headers.get("x-b"), "2");
    assert.equal(b.referrer, "about:client");
    assert.equal(b.referrerPolicy, "");
  });

  both("takes the input's body, which becomes used", async (R) => {
    const a = new R(URL_, { method: "POST", body: "moved" });
    const b = new R(a);
    assert.equal(a.bodyUsed, true);
    assert.equal(b.bodyUsed, false);
    assert.equal(await b.text(), "moved");
    await assert.rejects(a.text(), TypeError);
  });

  both("init's body replaces the input's without using it", async (R) => {
    const a = new R(URL_, { method: "POST", body: "old" });
    const b = new R(a, { body: "new" });
    assert.equal(a.bodyUsed, false);
    assert.equal(await b.text(), "new");
    assert.equal(await a.text(), "old");
  });

  both("init's body: null keeps the input's", async (R) => {
    const a = new R(URL_, { method: "POST", body: "kept" });
    assert.equal(await new R(a, { body: null }).text(), "kept");
  });

  both("a used input body is a TypeError, unless init gives a body", async (R) => {
    const a = new R(URL_, { method: "POST", body: "x" });
    await a.text();
    assert.throws(() => new R(a), TypeError);
    assert.equal(new R(a, { body: "y" }).method, "POST");
  });

  both("a failed construction leaves the input unused", (R) => {
    const a = new R(URL_, { method: "POST", body: "x" });
    assert.throws(() => new R(a, { method: "TRACE" }), TypeError);
    assert.equal(a.bodyUsed, false);
  });

  both("turning a request with a body into GET or HEAD is a TypeError", (R) => {
    const a = new R(URL_, { method: "POST", body: "x" });
    assert.throws(() => new R(a, { method: "GET" }), TypeError);
    assert.throws(() => new R(a, { method: "HEAD" }), TypeError);
  });

  both("a stream body moves without needing duplex again", async (R) => {
    const a = new R(URL_, { method: "POST", body: streamOf("s1"), duplex: "half" });
    assert.equal(await new R(a).text(), "s1");
  });

  test("Node's Request as input to ours, body included", async () => {
    const g = new NodeRequest(URL_, { method: "POST", body: "from node", headers: { "x-n": "1" }, cache: "reload" });
    const r = new Request(g);
    assert.equal(r.method, "POST");
    assert.equal(r.url, URL_);
    assert.equal(r.headers.get("x-n"), "1");
    assert.equal(r.cache, "reload");
    assert.equal(await r.text(), "from node");
    assert.equal(g.bodyUsed, true);
  });
});

describe("clone", () => {
  both("copies everything; headers are its own", (R) => {
    const a = new R(URL_, { method: "POST", body: "b", headers: { "x-a": "1" }, redirect: "error", cache: "no-cache" });
    const b = a.clone();
    assert.equal(b.method, "POST");
    assert.equal(b.url, URL_);
    assert.equal(b.redirect, "error");
    assert.equal(b.cache, "no-cache");
    assert.equal(b.headers.get("x-a"), "1");
    b.headers.set("x-a", "2");
    assert.equal(a.headers.get("x-a"), "1");
  });

  both("both bodies can be read", async (R) => {
    const a = new R(URL_, { method: "POST", body: "twice" });
    const b = a.clone();
    assert.equal(await a.text(), "twice");
    assert.equal(await b.text(), "twice");
  });

  both("a stream body is teed", async (R) => {
    const a = new R(URL_, { method: "POST", body: streamOf("x", "y"), duplex: "half" });
    const b = a.clone();
    assert.deepEqual(await Promise.all([a.text(), b.text()]), ["xy", "xy"]);
  });

  both("after the body was used or locked it is a TypeError", async (R) => {
    const a = new R(URL_, { method: "POST", body: "x" });
    await a.text();
    assert.throws(() => a.clone(), TypeError);
    const l = new R(URL_, { method: "POST", body: "x" });
    l.body.getReader();
    assert.throws(() => l.clone(), TypeError);
  });

  both("a request without a body clones", (R) => {
    const c = new R(URL_).clone();
    assert.equal(c.body, null);
    assert.equal(c.method, "GET");
  });
});

describe("identity", () => {
  test("instanceof holds both ways between ours and Node's", () => {
    assert.ok(new Request(URL_) instanceof NodeRequest);
    assert.ok(new NodeRequest(URL_) instanceof Request);
    assert.equal({} instanceof Request, false);
    assert.equal(new Response() instanceof Request, false);
  });

  both("Object.prototype.toString says Request", (R) => {
    assert.equal(Object.prototype.toString.call(new R(URL_)), "[object Request]");
  });

  both("the prototype has every member of the standard", (R) => {
    for (const m of Object.keys(IDL.Request.operations)) assert.equal(typeof R.prototype[m], "function", m);
    for (const g of IDL.Request.attributes)
      assert.equal(typeof Object.getOwnPropertyDescriptor(R.prototype, g)?.get, "function", g);
  });

  both("getters check their receiver", (R) => {
    assert.throws(() => Object.getOwnPropertyDescriptor(R.prototype, "url").get.call({}), TypeError);
    assert.throws(() => R.prototype.clone.call({}), TypeError);
  });
});

describe("incoming requests", () => {
  let ctx;
  const seen = new Map();
  before(async () => {
    // overrideGlobals: false keeps Node's classes global for the tests above and below.
    ctx = await start(
      async (event) => {
        const req = event.request;
        const path = new URL(req.url).pathname;
        const out = {};
        const attempt = (name, fn) => {
          try {
            out[name] = { value: fn() };
          } catch (e) {
            out[name] = { error: e.constructor.name };
          }
        };
        if (path === "/inspect") {
          out.url = req.url;
          out.method = req.method;
          out.host = req.headers.get("host");
          out.custom = req.headers.get("X-Custom");
          out.hasMissing = req.headers.has("x-missing");
          attempt("append", () => req.headers.append("x-new", "1"));
          attempt("set", () => req.headers.set("x-custom", "changed"));
          attempt("delete", () => req.headers.delete("x-custom"));
          out.after = req.headers.get("x-custom");
          out.keys = [...req.headers.keys()].filter((k) => k.startsWith("x-"));
          attempt("setAfterIteration", () => req.headers.set("x-custom", "changed"));
          attempt("relative", () => new Request("/relative").url);
          out.instance = [
            req instanceof Request,
            req instanceof NodeRequest,
            req.headers instanceof Headers,
            req.headers instanceof NodeHeaders,
          ];
          out.body = req.body;
          out.bodyUsed = req.bodyUsed;
          out.signalAborted = req.signal.aborted;
          out.cache = req.cache;
          out.mode = req.mode;
          const copy = new Request(req);
          copy.headers.set("x-custom", "copied");
          out.copy = [copy.url, copy.method, copy.headers.get("x-custom"), req.headers.get("x-custom")];
          const clone = req.clone();
          attempt("cloneSet", () => clone.headers.set("x-custom", "c"));
          out.cloneUrl = clone.url;
        } else if (path === "/lookups") {
          // More lookups than are answered from the packed head (headers.ts PACKED_LOOKUPS),
          // gets or has first as the query says, then an iteration, then the lookups again.
          const names = ["x-b", "x-none", "x-dup", "x-empty", "X-Dup", "keep-alive", "x-space", "x-missing", "X-B"];
          const gets = () => names.map((n) => req.headers.get(n));
          const has = () => names.map((n) => req.headers.has(n));
          if (new URL(req.url).search === "?has") [out.has, out.gets] = [has(), gets()];
          else [out.gets, out.has] = [gets(), has()];
          out.entries = [...req.headers].filter(([n]) => n !== "host");
          out.after = [gets(), has()];
        } else if (path === "/echo-twice") {
          const clone = req.clone();
          out.first = await req.text();
          out.second = await clone.text();
          out.used = [req.bodyUsed, clone.bodyUsed];
        } else if (path === "/forward") {
          const forwarded = new Request(req, { headers: { "x-forwarded": "yes" } });
          out.usedBefore = req.bodyUsed;
          out.text = await forwarded.text();
          out.used = req.bodyUsed;
          out.header = forwarded.headers.get("x-forwarded");
          await assert.rejects(req.text(), TypeError);
        } else if (path === "/form") {
          const form = await req.formData();
          out.entries = [];
          for (const [k, v] of form)
            out.entries.push([k, typeof v === "string" ? v : [v.name, v.type, await v.text()]]);
        } else if (path === "/blob") {
          const b = await req.blob();
          out.type = b.type;
          out.size = b.size;
          attempt("again", () => req.bodyUsed);
        } else if (path === "/bytes") {
          const b = await req.bytes();
          out.proto = Object.getPrototypeOf(b) === Uint8Array.prototype;
          out.length = b.length;
          out.used = req.bodyUsed;
        }
        seen.set(path, out);
        event.respondWith(Response.json(out));
      },
      { overrideGlobals: false },
    );
  });
  after(() => ctx.server.close());

  const get = async (path, init) => {
    const r = await fetch(ctx.base + path, init);
    assert.equal(r.status, 200, `${path}: ${r.status}`);
    return r.json();
  };

  test("url, method and headers read natively; headers immutable (TypeError), before and after iterating", async () => {
    const out = await get("/inspect", { headers: { "x-custom": "v", "x-b": "2" } });
    assert.equal(out.url, `${ctx.base}/inspect`);
    assert.equal(out.method, "GET");
    assert.equal(out.host, new URL(ctx.base).host);
    assert.equal(out.custom, "v");
    assert.equal(out.hasMissing, false);
    assert.deepEqual(out.append, { error: "TypeError" });
    assert.deepEqual(out.set, { error: "TypeError" });
    assert.deepEqual(out.delete, { error: "TypeError" });
    assert.equal(out.after, "v");
    assert.deepEqual(out.keys, ["x-b", "x-custom"]);
    assert.deepEqual(out.setAfterIteration, { error: "TypeError" });
  });

  test("header lookups: repeated names combined, any case, values as sent, before and after iteration", async () => {
    const gets = ["2", null, "1, 2", "", "1, 2", "timeout=5", "a  b\t c", null, "2"];
    const has = [true, false, true, true, true, true, true, false, true];
    for (const first of ["get", "has"]) {
      // A value that reads as a name (x-b, x-none) before it; x-dup's two lines apart.
      const { text } = await raw(
        ctx.server.port,
        `GET /lookups?${first} HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nX-A: x-b\r\nX-Ref: x-none\r\n` +
          "Connection: close\r\nKeep-Alive: timeout=5\r\nx-dup: 2\r\nX-Space: a  b\t c\r\nX-Empty:\r\nX-B: 2\r\n\r\n",
      );
      const out = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
      assert.deepEqual(out.gets, gets, first);
      assert.deepEqual(out.has, has, first);
      assert.deepEqual(out.after, [gets, has], first);
      assert.deepEqual(out.entries, [
        ["connection", "close"],
        ["keep-alive", "timeout=5"],
        ["x-a", "x-b"],
        ["x-b", "2"],
        ["x-dup", "1, 2"],
        ["x-empty", ""],
        ["x-ref", "x-none"],
        ["x-space", "a  b\t c"],
      ]);
    }
  });

  test("a relative URL in a handler is a TypeError", async () => {
    const out = await get("/inspect");
    assert.deepEqual(out.relative, { error: "TypeError" });
  });

  test("instanceof, body, bodyUsed, signal and options", async () => {
    const out = await get("/inspect");
    assert.deepEqual(out.instance, [true, true, true, true]);
    assert.equal(out.body, null);
    assert.equal(out.bodyUsed, false);
    assert.equal(out.signalAborted, false);
    assert.equal(out.cache, "default");
    assert.equal(out.mode, "cors");
  });

  test("new Request(incoming) has mutable headers; its clone keeps them immutable", async () => {
    const out = await get("/inspect", { headers: { "x-custom": "orig" } });
    assert.deepEqual(out.copy, [`${ctx.base}/inspect`, "GET", "copied", "orig"]);
    assert.deepEqual(out.cloneSet, { error: "TypeError" });
    assert.equal(out.cloneUrl, `${ctx.base}/inspect`);
  });

  test("clone() tees the native body: both read it", async () => {
    const out = await get("/echo-twice", { method: "POST", body: "payload ".repeat(1000) });
    assert.equal(out.first, "payload ".repeat(1000));
    assert.equal(out.second, out.first);
    assert.deepEqual(out.used, [true, true]);
  });

  test("new Request(incoming, init) takes the body; the incoming one is used", async () => {
    const out = await get("/forward", { method: "PUT", body: "forwarded body" });
    assert.equal(out.usedBefore, true);
    assert.equal(out.text, "forwarded body");
    assert.equal(out.used, true);
    assert.equal(out.header, "yes");
  });

  test("formData() of a multipart upload from fetch", async () => {
    const form = new FormData();
    form.append("name", "value é");
    form.append("file", new File(["file body"], "up.txt", { type: "text/plain" }));
    const out = await get("/form", { method: "POST", body: form });
    assert.deepEqual(out.entries, [
      ["name", "value é"],
      ["file", ["up.txt", "text/plain", "file body"]],
    ]);
  });

  test("formData() of a urlencoded upload", async () => {
    const out = await get("/form", { method: "POST", body: new URLSearchParams({ a: "1", b: "x y" }) });
    assert.deepEqual(out.entries, [
      ["a", "1"],
      ["b", "x y"],
    ]);
  });

  test("blob() is typed from the request's Content-Type", async () => {
    const out = await get("/blob", {
      method: "POST",
      body: "12345",
      headers: { "content-type": "Application/Octet-Stream" },
    });
    assert.equal(out.type, "application/octet-stream");
    assert.equal(out.size, 5);
  });

  test("bytes() is a plain Uint8Array, and the body becomes used", async () => {
    const out = await get("/bytes", { method: "POST", body: "abc" });
    assert.deepEqual([out.proto, out.length, out.used], [true, 3, true]);
  });

  test("Node's Response and Headers are still the global ones (overrideGlobals: false)", () => {
    assert.equal(globalThis.Response, NodeResponse);
    assert.equal(globalThis.Headers, NodeHeaders);
  });
});
