// How the addon is linked, read from its ELF file: what it costs in resident memory at load
// (docs/network-thread.md, "Memory at rest and at peak, round eighteen"). Guards of the build's
// settings (Cargo.toml's napi features, build.rs's link arguments): the addon loading and
// serving at all is what every other test file checks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const path = require.resolve(process.env.FETCH_RS_NATIVE_PATH ?? "../fetch-rs.node");
const linux = process.platform === "linux";
const glibc = linux ? process.report.getReport().header.glibcVersionRuntime : undefined;

/** The section headers of a 64-bit little-endian ELF file, with their names. */
function sections(elf) {
  assert.equal(elf.readUInt32BE(0), 0x7f454c46, "an ELF file");
  assert.equal(elf[4], 2, "64-bit");
  assert.equal(elf[5], 1, "little-endian");
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const all = [];
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * shentsize;
    all.push({
      nameAt: elf.readUInt32LE(h),
      type: elf.readUInt32LE(h + 4),
      offset: Number(elf.readBigUInt64LE(h + 24)),
      size: Number(elf.readBigUInt64LE(h + 32)),
      link: elf.readUInt32LE(h + 40),
    });
  }
  for (const s of all) s.name = cString(elf, all[shstrndx].offset + s.nameAt);
  return all;
}

const cString = (buf, at) => buf.toString("latin1", at, buf.indexOf(0, at));

/** Names of the dynamic symbols the file imports (undefined: section index 0). */
function imports(elf, all) {
  const dynsym = all.find((s) => s.type === 11); // SHT_DYNSYM
  const strtab = all[dynsym.link];
  const names = [];
  for (let at = dynsym.offset; at < dynsym.offset + dynsym.size; at += 24) {
    if (elf.readUInt16LE(at + 6) === 0) names.push(cString(elf, strtab.offset + elf.readUInt32LE(at)));
  }
  return names;
}

/** The `.dynamic` entries as a map from tag to value. */
function dynamic(elf, all) {
  const d = all.find((s) => s.type === 6); // SHT_DYNAMIC
  const out = new Map();
  for (let at = d.offset; at < d.offset + d.size; at += 16) {
    const tag = Number(elf.readBigInt64LE(at));
    if (tag === 0) break;
    out.set(tag, Number(elf.readBigUInt64LE(at + 8)));
  }
  return out;
}

test("the addon imports the Node-API functions it calls, for the loader to resolve", { skip: !linux }, () => {
  const elf = readFileSync(path);
  const names = imports(elf, sections(elf)).map((n) => n.replace(/@.*/, ""));
  const napi = names.filter((n) => n.startsWith("napi_") || n.startsWith("node_api_"));
  // napi-sys's `dyn-symbols` looks every Node-API function up with dlsym at load instead, and
  // the addon then imports none of them.
  for (const f of ["napi_create_function", "napi_call_function", "napi_create_threadsafe_function"]) {
    assert.ok(napi.includes(f), `${f} is not among the addon's imports (${napi.length} Node-API imports)`);
  }
});

test(
  "the addon's relative relocations are packed (DT_RELR) where glibc applies them",
  { skip: !glibc || process.arch !== "x64" ? "glibc on x86-64 only" : false },
  () => {
    const [major, minor] = glibc.split(".").map(Number);
    const elf = readFileSync(path);
    const d = dynamic(elf, sections(elf));
    const DT_RELASZ = 8;
    const DT_RELR = 36;
    if (major > 2 || (major === 2 && minor >= 36)) {
      assert.ok(d.has(DT_RELR), "no DT_RELR entry");
      // Unpacked, `.rela.dyn` held about 13,500 relative entries of 24 bytes (318 KiB).
      assert.ok((d.get(DT_RELASZ) ?? 0) < 64 * 1024, `RELASZ ${d.get(DT_RELASZ)}`);
    } else {
      assert.ok(!d.has(DT_RELR), "DT_RELR with a glibc older than 2.36 would not load");
    }
  },
);
