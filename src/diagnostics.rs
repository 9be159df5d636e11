//! Diagnostics: `tracing` events at the decisions a person debugging wants to see
//! (connection accepted and closed and why, protocol chosen, limits hit, timeouts), written
//! to stderr when the `FETCH_RS_LOG` environment variable asks for them, e.g.
//! `FETCH_RS_LOG=debug` or `FETCH_RS_LOG=fetch_rs=trace,h2=debug` (tracing-subscriber's
//! `EnvFilter` syntax). Unset, only warnings and errors are written (nothing, on a healthy
//! server), and the rest costs nearly nothing.

use std::sync::Once;

/// The environment variable that switches the log on.
const ENV: &str = "FETCH_RS_LOG";

/// The filter when `FETCH_RS_LOG` is unset or empty.
const DEFAULT: &str = "fetch_rs=warn";

/// Installs the subscriber, with `FETCH_RS_LOG`'s filter or `DEFAULT`. Called each time the addon is
/// loaded; several worker threads may load it at once, and only the first call in the
/// process does anything. An application that installed its own global subscriber keeps it.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Unset: warnings and errors only (an accept failing for want of descriptors,
        // a socket that cannot be registered), which a server's operator must see, and
        // which a healthy server never writes.
        let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT.to_string());
        let filter = match tracing_subscriber::EnvFilter::builder().parse(&spec) {
            Ok(f) => f,
            Err(e) => {
                // The one place the addon writes to stderr itself: the log cannot say it.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("fetch-rs: {ENV}={spec:?} is not a valid filter ({e}); logging stays off\n").as_bytes(),
                );
                return;
            }
        };
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    });
}
