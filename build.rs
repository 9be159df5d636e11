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
}
