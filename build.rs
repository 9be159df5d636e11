use std::process::Command;

fn main() {
    napi_build::setup();
    // Keep the addon mapped for the life of the process once loaded (glibc): a worker
    // thread that loaded it may end while tokio threads, or thread-local destructors
    // registered by its code, still run it (rust-lang/rust#91979). napi-build adds the
    // same flag today; stated here so the guarantee does not rest on its default.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_env == "gnu" && os != "windows" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    // Relative relocations packed (DT_RELR): the loader reads all of `.rela.dyn` at load,
    // 318 KiB of 13,456 relative entries that stay resident; packed they take a few KiB.
    // Only where the glibc that will load the addon is known to apply them (2.36): the
    // addon is built where it is installed, so the host's, and not when cross-compiling.
    if os == "linux" && target_env == "gnu" && host_glibc_has_relr() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
    // The functions a plain HTTP server runs placed together at the start of `.text`
    // (scripts/hot-text.ld, made by scripts/hot-text.mjs): the page cache holds the addon in
    // large folios and a fault maps the whole folio, so spread over 3.3 MiB of code they kept
    // 1.8 MiB resident at rest, together 0.9. The script is written for lld (GNU ld would add a
    // second `.text` in the read-only segment), so only where rustc links with its own lld:
    // x86-64 Linux from 1.90, with no linker or linker flags of the user's.
    // FETCH_RS_HOT_TEXT=0 leaves it out.
    println!("cargo:rerun-if-env-changed=FETCH_RS_HOT_TEXT");
    println!("cargo:rerun-if-changed=scripts/hot-text.ld");
    if os == "linux"
        && target_env == "gnu"
        && std::env::var("FETCH_RS_HOT_TEXT").as_deref() != Ok("0")
        && links_with_rust_lld()
    {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let script = std::path::Path::new(&dir).join("scripts").join("hot-text.ld");
        if script.is_file() {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The build's host is the target and its glibc is 2.36 or later (`getconf GNU_LIBC_VERSION`).
fn host_glibc_has_relr() -> bool {
    if std::env::var("HOST").ok() != std::env::var("TARGET").ok() {
        return false;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 36)
}

/// rustc links this target with its own lld: x86-64 Linux (glibc) from rustc 1.90, unless a
/// linker (`RUSTC_LINKER`, from cargo's config or environment) or linker flags are given.
fn links_with_rust_lld() -> bool {
    if std::env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return false;
    }
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"].iter().any(|f| flags.contains(f)) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (1, 90)
}
