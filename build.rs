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
