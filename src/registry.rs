//! The servers of a JS thread by handle: `NativeServer` (the class JS creates, whose
//! garbage collection drops its `Core`) and `with_core`, which every call goes through.

use crate::core::{invalid_state, Core};
use crate::error::{BridgeResult, ErrorKind};
use crate::options::NativeOptions;
use napi::bindgen_prelude::Function;
use napi::Env;
use napi_derive::napi;

thread_local! {
    /// The servers created on this JS thread, by handle (index); `None` once finalized.
    static SERVERS: std::cell::RefCell<Vec<Option<Core>>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Whether this JS thread's environment has the cleanup hook below.
    static ENV_HOOKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Registers, once per JS thread, a hook that shuts this thread's servers down when its
/// environment is torn down (worker.terminate(), process.exit() in a worker, a worker
/// whose event loop ran dry with a server never closed). Without it the runtimes would
/// go only when V8 finalizes the server objects or the thread's locals are destroyed,
/// whichever comes first, with tokio threads possibly still polling connections.
fn hook_env_cleanup(env: &Env) -> napi::Result<()> {
    if ENV_HOOKED.with(|h| h.replace(true)) {
        return Ok(());
    }
    env.add_env_cleanup_hook((), |()| {
        ENV_HOOKED.with(|h| h.set(false));
        // Taken out first, shut down after the borrow ends.
        let cores: Vec<Core> = SERVERS
            .try_with(|servers| {
                servers
                    .try_borrow_mut()
                    .map(|mut s| s.iter_mut().filter_map(Option::take).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for mut core in cores {
            core.shut_down_for_env_exit();
        }
    })?;
    Ok(())
}

/// Runs `f` on the server `handle`. Every caller runs on the JS thread, and none calls
/// back into JS while it holds the server, so the borrow is never contended.
pub(crate) fn with_core<R>(handle: u32, f: impl FnOnce(&mut Core) -> BridgeResult<R>) -> BridgeResult<R> {
    SERVERS.with(|servers| {
        let mut servers = servers.try_borrow_mut().map_err(|_| invalid_state("the server is busy"))?;
        match servers.get_mut(handle as usize).and_then(Option::as_mut) {
            Some(core) => f(core),
            None => Err(invalid_state("the server is gone")),
        }
    })
}

/// `with_core` for the methods below: napi-rs throws the error with its kind's `code`.
fn on_core<R>(handle: u32, f: impl FnOnce(&mut Core) -> BridgeResult<R>) -> napi::Result<R, ErrorKind> {
    Ok(with_core(handle, f)?)
}

/// A server's handle and its lifetime: creating one registers a `Core`, and garbage
/// collection of the object drops it. The per-request calls are in `calls.rs`.
#[napi]
pub struct NativeServer {
    handle: u32,
}

#[napi]
impl NativeServer {
    #[napi(constructor)]
    pub fn new(env: Env, options: NativeOptions) -> napi::Result<Self, ErrorKind> {
        let core = Core::new(options)?;
        hook_env_cleanup(&env).map_err(crate::error::BridgeError::from)?;
        let handle = SERVERS.with(|servers| {
            let mut servers = servers.borrow_mut();
            match servers.iter().position(Option::is_none) {
                Some(i) => {
                    servers[i] = Some(core);
                    i
                }
                None => {
                    servers.push(Some(core));
                    servers.len() - 1
                }
            }
        });
        Ok(NativeServer { handle: handle as u32 })
    }

    /// The handle the per-request functions take.
    #[napi(getter)]
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Binds the socket and starts serving; returns the bound port.
    #[napi(catch_unwind)]
    pub fn listen(&self, doorbell: Function<(), ()>) -> napi::Result<u32, ErrorKind> {
        on_core(self.handle, |c| c.listen(doorbell))
    }

    /// Starts a graceful close: stop accepting, let in-flight requests finish, close
    /// idle connections; after `graceMs` (0: wait forever) force the rest. A CLOSED
    /// record follows when no connection is left.
    #[napi(catch_unwind)]
    pub fn close(&self, grace_ms: f64) -> napi::Result<(), ErrorKind> {
        on_core(self.handle, |c| c.close(grace_ms))
    }

    /// Forces every connection closed now (after or instead of a graceful close).
    #[napi(catch_unwind)]
    pub fn force_close(&self) -> napi::Result<(), ErrorKind> {
        on_core(self.handle, |c| {
            c.force_close();
            Ok(())
        })
    }

    /// Releases the doorbell and the runtime once closed, so nothing keeps Node's event
    /// loop alive. Unanswered requests are dropped.
    #[napi(catch_unwind)]
    pub fn shutdown(&self) -> napi::Result<(), ErrorKind> {
        on_core(self.handle, |c| {
            c.shutdown();
            Ok(())
        })
    }

    /// `server.ref()` (true) / `server.unref()` (false): whether the server keeps Node's
    /// event loop alive while it listens.
    #[napi(catch_unwind)]
    pub fn set_ref(&self, env: Env, on: bool) -> napi::Result<(), ErrorKind> {
        on_core(self.handle, |c| c.set_ref(&env, on))
    }

    /// New certificates (see `Core::set_tls`); throws `ERR_TLS_CONFIG` and keeps the old ones.
    #[napi(catch_unwind)]
    pub fn set_tls(&self, entries: Vec<crate::tls::NativeTls>) -> napi::Result<(), ErrorKind> {
        on_core(self.handle, |c| c.set_tls(entries))
    }

    /// `[activeConnections, totalRequests, requestsPerSecond, avgLatencyMs, pendingRequests,
    /// tlsHandshakes, tlsHandshakeFailures]`.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> napi::Result<Vec<f64>, ErrorKind> {
        on_core(self.handle, |c| Ok(c.stats()))
    }
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        // Taken out first, dropped after the borrow: dropping a runtime may take a while.
        // try_with: a worker thread's table may already be gone when its env is torn down.
        let core = SERVERS
            .try_with(|servers| {
                servers.try_borrow_mut().ok().and_then(|mut s| s.get_mut(self.handle as usize).and_then(Option::take))
            })
            .ok()
            .flatten();
        drop(core);
    }
}
