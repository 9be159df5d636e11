// lib/native.ts: the constants both languages agree on come from the addon (src/wire.rs),
// and the TS side holds no number of its own for any of them.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import * as native from "../dist/native.js";

const require = createRequire(import.meta.url);
const addon = require(process.env.FETCH_RS_NATIVE_PATH ?? "../fetch-rs.node");
const rust = addon.constants;
const WIRE_NAME = /^(RECORD|FLAG|METHOD|ABORT|BODY|PULL|CT|RESPOND|INDEX)_[A-Z_]+$|^METHODS$/;

test("every constant lib/native.ts exports has the value src/wire.rs gives it", () => {
  const used = Object.keys(native).filter((name) => WIRE_NAME.test(name));
  assert.ok(used.length >= 20, `only ${used.length} constants found`);
  for (const name of used) {
    assert.ok(name in rust, `${name} is not defined in src/wire.rs`);
    assert.deepEqual(native[name], rust[name], name);
  }
});

test("the Rust side defines every constant as a number (METHODS: names)", () => {
  for (const [name, value] of Object.entries(rust)) {
    if (name === "METHODS") {
      assert.ok(Array.isArray(value) && value.every((m) => typeof m === "string"));
      assert.ok(value.length <= rust.METHOD_MASK && value.length === rust.METHOD_OTHER);
    } else assert.equal(typeof value, "number", name);
  }
  assert.equal(rust.INDEX_MASK, 2 ** rust.INDEX_BITS - 1);
});

test("no file in lib/ writes a wire constant's number by hand", () => {
  const dir = new URL("../lib/", import.meta.url);
  const assignment = /\b((?:RECORD|FLAG|METHOD|ABORT|BODY|PULL|CT|RESPOND|INDEX)_[A-Z_]+)\s*=\s*[-(\d]/g;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const text = readFileSync(new URL(file, dir), "utf8");
    const found = [...text.matchAll(assignment)].map((m) => m[1]).filter((name) => name in rust);
    assert.deepEqual(found, [], `${file} copies ${found.join(", ")} from src/wire.rs`);
  }
});

test("a native error reaches JS with its code as a property, the message as written", () => {
  assert.throws(
    () => new addon.NativeServer({ host: "not a host", port: 0 }),
    (e) => {
      assert.equal(e.code, "ERR_INVALID_OPTION");
      assert.doesNotMatch(e.message, /^\[/);
      return true;
    },
  );
  const server = new addon.NativeServer({ host: "127.0.0.1", port: 0 });
  assert.throws(() => addon.calls(server.handle).bodyCollect(1), {
    code: "ERR_INVALID_STATE",
    message: "the request is no longer available",
  });
  assert.throws(() => addon.calls(server.handle + 1000).respondStream(1, 200 << 16), {
    code: "ERR_INVALID_STATE",
    message: "the server is gone",
  });
  assert.throws(() => server.close(0), { code: "ERR_INVALID_STATE", message: "the server is not listening" });
});

test("nativeError makes invalid input a TypeError and keeps the code", () => {
  const e = native.nativeError(Object.assign(new Error("invalid header value"), { code: "ERR_INVALID_HEADER" }));
  assert.ok(e instanceof TypeError);
  assert.equal(e.code, "ERR_INVALID_HEADER");
  const other = Object.assign(new Error("x"), { code: "ERR_LISTEN" });
  assert.equal(native.nativeError(other), other);
});

test("the published type declarations hold no internals", () => {
  const dir = new URL("../dist/", import.meta.url);
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".d.ts"))) {
    const text = readFileSync(new URL(file, dir), "utf8");
    assert.doesNotMatch(text, /@internal|listenSync/, file);
  }
});
