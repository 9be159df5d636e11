//! Diagnostics: `tracing` events at the decisions a person debugging wants to see
//! (connection accepted and closed and why, protocol chosen, limits hit, timeouts), written
//! to stderr when the `FETCH_RS_LOG` environment variable asks for them, e.g.
//! `FETCH_RS_LOG=debug` or `FETCH_RS_LOG=fetch_rs=trace,h2=debug` (tracing-subscriber's
//! `EnvFilter` syntax). Off, and nearly free, when it is unset.

use std::sync::Once;

/// The environment variable that switches the log on.
const ENV: &str = "FETCH_RS_LOG";

/// Installs the subscriber if `FETCH_RS_LOG` is set. Called each time the addon is
/// loaded; several worker threads may load it at once, and only the first call in the
/// process does anything. An application that installed its own global subscriber keeps it.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(spec) = std::env::var(ENV) else { return };
        if spec.trim().is_empty() {
            return;
        }
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
