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

/** The function symbols of `.symtab` (name, address, size); empty when the file is stripped. */
function functions(elf, all) {
  const symtab = all.find((s) => s.type === 2); // SHT_SYMTAB
  if (!symtab) return [];
  const strtab = all[symtab.link];
  const out = [];
  for (let at = symtab.offset; at < symtab.offset + symtab.size; at += 24) {
    if ((elf[at + 4] & 0xf) !== 2 || elf.readUInt16LE(at + 6) === 0) continue; // STT_FUNC, defined
    const size = Number(elf.readBigUInt64LE(at + 16));
    if (size === 0) continue;
    out.push({
      name: cString(elf, strtab.offset + elf.readUInt32LE(at)),
      address: Number(elf.readBigUInt64LE(at + 8)),
      size,
    });
  }
  return out;
}

/** The rustc version and linker that `.comment` records. */
function producedBy(elf, all) {
  const c = all.find((s) => s.name === ".comment");
  const text = c ? elf.toString("latin1", c.offset, c.offset + c.size) : "";
  const rustc = /rustc version (\d+)\.(\d+)/.exec(text);
  return { rustc: rustc ? [Number(rustc[1]), Number(rustc[2])] : null, lld: /Linker: LLD/.test(text) };
}

// scripts/hot-text.ld (build.rs, where rustc links with its own lld): the functions a plain
// server runs first in `.text`, so that the few hundred run at load share a few large folios
// of the page cache instead of one each (docs/network-thread.md, "Memory at rest, round
// twenty-three"). A guard of the build's setting: on main's build the same functions lie all
// over the 3.3 MiB of code.
test(
  "the functions a plain server runs lie together at the start of the addon's one .text",
  { skip: !linux || process.arch !== "x64" || process.env.FETCH_RS_HOT_TEXT === "0" ? "x86-64 Linux only" : false },
  (t) => {
    const elf = readFileSync(path);
    const all = sections(elf);
    const { rustc, lld } = producedBy(elf, all);
    if (!lld || !rustc || rustc[0] * 1000 + rustc[1] < 1090) return t.skip("not linked by rustc's own lld");
    const texts = all.filter((s) => s.name === ".text");
    assert.equal(texts.length, 1, "one .text section");
    const fns = functions(elf, all);
    if (fns.length === 0) return t.skip("the addon is stripped");
    const script = readFileSync(new URL("../scripts/hot-text.ld", import.meta.url), "utf8");
    const globs = [...script.matchAll(/\*\(\.text\.(\S+)/g)].map(
      (m) =>
        new RegExp(
          `^${m[1]
            .replace(/[.+^${}()|[\]\\]/g, "\\$&")
            .replace(/\*/g, ".*")
            .replace(/\?/g, ".")}$`,
        ),
    );
    assert.ok(globs.length > 200, `${globs.length} patterns in scripts/hot-text.ld`);
    const hot = fns.filter((f) => globs.some((g) => g.test(f.name)));
    assert.ok(hot.length > 200, `${hot.length} of the addon's functions match the script`);
    // The listed functions' bodies with room for alignment: most of them end within it.
    const start = Math.min(...fns.map((f) => f.address));
    const room = start + 1.25 * hot.reduce((n, f) => n + f.size, 0);
    const inside = hot.filter((f) => f.address + f.size <= room).length;
    assert.ok(inside >= 0.95 * hot.length, `${inside} of ${hot.length} within the first ${room - start} bytes of code`);
  },
);
