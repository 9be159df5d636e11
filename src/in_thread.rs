//! The network on the JS thread (`workerThreads: 0`): a current-thread tokio runtime whose
//! epoll descriptor Node's loop watches (`uv_poll_t`). Each readiness runs one non-blocking
//! turn of the runtime and calls the JS drain synchronously inside it, so a request is
//! parsed, handled and answered on one thread with no cross-thread wake-up
//! (docs/network-thread.md has the measurements).
//!
//! tokio keeps its driver private: the epoll descriptor is found with a probe registered
//! in the runtime (`driver_fd`, Linux only), and the runtime's timers are driven by a
//! 10 ms libuv timer (unreferenced) since their next deadline is private too, so a
//! timeout may fire up to 10 ms late.

use crate::bridge::Doorbell;
use napi::sys;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

/// What a thread knows about the in-thread mode: one thread-local, so that a task's poll
/// looks it up once (in a shared library each lookup is a call of `__tls_get_addr`).
struct ThreadState {
    /// Polls and wake-ups of tasks on this thread (`note_work`), so a turn can tell
    /// whether its last round did anything.
    work: Cell<u64>,
    /// This thread drives a runtime from Node's loop (`LocalDriver::start`).
    drives: Cell<bool>,
    /// The doorbell of the driver whose turn is running on this thread (null outside one).
    turning: Cell<*const Doorbell>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState { work: Cell::new(0), drives: Cell::new(false), turning: Cell::new(std::ptr::null()) }
    };
}

/// Whether this thread is inside a turn of the driver that rings `doorbell` (JS called from
/// it, or a task it polls): events queued now are drained before the turn ends, with no
/// wake-up of the runtime.
pub fn in_turn_of(doorbell: &Doorbell) -> bool {
    THREAD.with(|t| std::ptr::eq(t.turning.get(), doorbell))
}

/// Counts work: a poll or a wake-up of a task.
#[inline]
pub fn note_work() {
    THREAD.with(|t| t.work.set(t.work.get().wrapping_add(1)));
}

/// Whether this thread drives a runtime from Node's loop (the in-thread mode).
pub fn drives_here() -> bool {
    THREAD.with(|t| t.drives.get())
}

/// Work counted on this thread so far.
fn work() -> u64 {
    THREAD.with(|t| t.work.get())
}

/// A future that counts its polls as work (`note_work`), and in the in-thread mode its
/// wake-ups too. Every task spawned on a server's runtime is wrapped in it: a turn runs
/// another round while the last one polled or woke any task. A task woken by the runtime's
/// last poll of the sockets in a turn has had its readiness taken from the epoll instance
/// Node's loop watches, so it would otherwise wait for the next event on another socket or
/// for the 10 ms tick; under load that left connections waiting up to 10 ms (a p99 of 5-7
/// ms where the threaded mode had under 1 ms), and the server idle meanwhile.
pub struct Noted<F> {
    fut: F,
    /// In the in-thread mode: the task's own waker as last seen, and the waker the task's
    /// future sees, which counts a wake-up as work and wakes the task. Made at the first
    /// poll on a thread that drives a runtime. The task's waker is kept here (not only in
    /// the `NoteWake`) so that checking it at each poll reads nothing outside the task.
    wake: Option<(std::task::Waker, std::task::Waker)>,
}

impl<F> Noted<F> {
    pub fn new(fut: F) -> Self {
        Noted { fut, wake: None }
    }
}

/// The waker of a task in the in-thread mode (`Noted`) whose own waker has another vtable
/// than the runtime's tasks (`note_waker`): the task's own, which a tokio task keeps for its
/// life (checked at each poll with `will_wake`, and replaced if it changed).
struct NoteWake(std::task::Waker);

impl std::task::Wake for NoteWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // On the thread whose runtime polls the task, this is what the turn looks at; on
        // another thread the wake-up reaches the runtime through its own wake-up descriptor.
        note_work();
        self.0.wake_by_ref();
    }
}

/// The vtable of the runtime's task wakers (tokio has one for all its tasks), kept at the
/// first `note_waker`: a waker of `NOTE_VTABLE` holds the task's data pointer and calls it.
static TASK_VTABLE: AtomicPtr<RawWakerVTable> = AtomicPtr::new(null_mut());

/// Like `NoteWake`, without an allocation of its own: a wake-up (tokio's driver, the
/// cork's read waker) goes from the waker straight to the task's header, which a poll
/// reads anyway, not through an `Arc` read only for its pointer (a cold line a wake-up
/// under load, docs/network-thread.md, "Plain requests, round sixteen, second part").
/// `None` for a waker of another vtable than the first one seen (`NoteWake` then).
fn note_waker(task: &Waker) -> Option<Waker> {
    let vtable = std::ptr::from_ref(task.vtable()).cast_mut();
    let kept = match TASK_VTABLE.compare_exchange(null_mut(), vtable, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => vtable,
        Err(kept) => kept,
    };
    if kept != vtable {
        return None;
    }
    let own = std::mem::ManuallyDrop::new(task.clone());
    // SAFETY: the clone's reference is the new waker's, released by `note_drop` or `note_wake`
    // through the task's vtable, which is `TASK_VTABLE`.
    Some(unsafe { Waker::from_raw(RawWaker::new(own.data(), &NOTE_VTABLE)) })
}

static NOTE_VTABLE: RawWakerVTable = RawWakerVTable::new(note_clone, note_wake, note_wake_by_ref, note_drop);

/// The task's own waker for a note waker's data (one reference, owned by the caller).
///
/// # Safety
/// `data` is a note waker's: a reference to a task whose wakers have `TASK_VTABLE`.
unsafe fn task_waker(data: *const ()) -> Waker {
    // SAFETY: set before any note waker was made (`note_waker`), and never changed.
    unsafe { Waker::from_raw(RawWaker::new(data, &*TASK_VTABLE.load(Ordering::Relaxed))) }
}

unsafe fn note_clone(data: *const ()) -> RawWaker {
    // SAFETY: the caller's reference stays the caller's; the clone takes a new one.
    let task = std::mem::ManuallyDrop::new(unsafe { task_waker(data) });
    let own = std::mem::ManuallyDrop::new((*task).clone());
    RawWaker::new(own.data(), &NOTE_VTABLE)
}

unsafe fn note_wake(data: *const ()) {
    note_work();
    // SAFETY: waking by value consumes the waker's reference.
    unsafe { task_waker(data) }.wake();
}

unsafe fn note_wake_by_ref(data: *const ()) {
    note_work();
    // SAFETY: the reference stays the waker's.
    std::mem::ManuallyDrop::new(unsafe { task_waker(data) }).wake_by_ref();
}

unsafe fn note_drop(data: *const ()) {
    // SAFETY: dropping releases the waker's reference.
    drop(unsafe { task_waker(data) });
}

impl<F: std::future::Future> std::future::Future for Noted<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let drives = THREAD.with(|t| {
            t.work.set(t.work.get().wrapping_add(1));
            t.drives.get()
        });
        // SAFETY: structural pinning of `fut`, which `Noted` never moves out; `wake` is not
        // pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { std::pin::Pin::new_unchecked(&mut this.fut) };
        if !drives {
            return fut.poll(cx);
        }
        let task = cx.waker();
        // A tokio task's waker: the note waker is the same data pointer with `NOTE_VTABLE`,
        // borrowed here (clones take a reference of their own, `note_clone`), so that the
        // poll reads nothing of `wake`, which lies past the future's state, in a line of its
        // own in the task (2 L1D misses a request under 50 connections).
        if std::ptr::eq(task.vtable(), TASK_VTABLE.load(Ordering::Relaxed)) {
            // SAFETY: `task` holds a reference to the task for as long as it is borrowed, and
            // the note waker made from its data is never dropped.
            let note =
                std::mem::ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(task.data(), &NOTE_VTABLE)) });
            return fut.poll(&mut std::task::Context::from_waker(&note));
        }
        if !this.wake.as_ref().is_some_and(|(seen, _)| seen.will_wake(task)) {
            let note = note_waker(task).unwrap_or_else(|| std::task::Waker::from(Arc::new(NoteWake(task.clone()))));
            this.wake = Some((task.clone(), note));
        }
        match &this.wake {
            Some((_, waker)) => fut.poll(&mut std::task::Context::from_waker(waker)),
            None => fut.poll(cx),
        }
    }
}

/// Spawns `fut` on the current runtime with its polls counted (`Noted`).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Noted::new(fut))
}

/// hyper's executor for HTTP/2 stream tasks, spawning them as `spawn` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotedExecutor;

impl<F> hyper::rt::Executor<F> for NotedExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        spawn(fut);
    }
}

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type TimerCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

/// libuv's functions, looked up in the process (Node exports them to addons).
struct Uv {
    poll_init: unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
    poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
    timer_init: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
    timer_start: unsafe extern "C" fn(*mut c_void, TimerCb, u64, u64) -> c_int,
    unref: unsafe extern "C" fn(*mut c_void),
    ref_: unsafe extern "C" fn(*mut c_void),
    close: unsafe extern "C" fn(*mut c_void, Option<CloseCb>),
}

#[cfg(target_os = "linux")]
unsafe fn sym<T>(name: &CStr) -> Option<T> {
    // SAFETY: the caller names a libuv function whose C signature matches `T`.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
    }
}

impl Uv {
    #[cfg(not(target_os = "linux"))]
    fn load() -> Option<Uv> {
        None
    }

    #[cfg(target_os = "linux")]
    fn load() -> Option<Uv> {
        // SAFETY: the signatures are libuv 1.x's.
        unsafe {
            Some(Uv {
                poll_init: sym(c"uv_poll_init")?,
                poll_start: sym(c"uv_poll_start")?,
                timer_init: sym(c"uv_timer_init")?,
                timer_start: sym(c"uv_timer_start")?,
                unref: sym(c"uv_unref")?,
                ref_: sym(c"uv_ref")?,
                close: sym(c"uv_close")?,
            })
        }
    }
}

/// Room for a `uv_poll_t` or `uv_timer_t` (about 160 bytes on 64-bit Linux). A handle's
/// first field is its `data` pointer.
type HandleMem = [u64; 64];

/// The in-thread network of one server.
pub struct LocalDriver {
    rt: tokio::runtime::Runtime,
    doorbell: Arc<Doorbell>,
    env: sys::napi_env,
    func: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    poll: *mut HandleMem,
    timer: *mut HandleMem,
    uv: Uv,
    in_turn: Cell<bool>,
    /// JS stopped a drain early (`reschedule`): call it again even with nothing new queued.
    js_again: Cell<bool>,
    /// The isolate is terminating (`worker.terminate()`, `process.exit()` in a worker): JS
    /// can no longer run, so the driver stops calling it and rescheduling itself, and the
    /// thread's loop gets to the teardown that closes it.
    js_gone: Cell<bool>,
    closed: Cell<bool>,
    open_handles: Cell<u32>,
}

/// The epoll descriptor of `rt`'s I/O driver. tokio keeps it private, so a probe (an
/// eventfd) is registered with the runtime and the epoll instance listing it in
/// /proc/self/fdinfo is the one: exact even while other threads create epoll instances.
#[cfg(not(target_os = "linux"))]
fn driver_fd(_rt: &tokio::runtime::Runtime) -> Result<i32, String> {
    Err("workerThreads: 0 (the network on the JS thread) is supported on Linux only".into())
}

#[cfg(target_os = "linux")]
fn driver_fd(rt: &tokio::runtime::Runtime) -> Result<i32, String> {
    // SAFETY: a plain syscall; the descriptor is owned by `probe` below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let probe = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let _enter = rt.enter();
    // SAFETY: `probe` owns its descriptor, which nothing closes or replaces while registered.
    let registered = unsafe { tokio::io::unix::AsyncFd::register(probe) }.map_err(|e| format!("probe: {e}"))?;
    let needle = format!("tfd: {raw:>8} ");
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
    let mut found = None;
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[eventpoll]")
            && std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).is_ok_and(|t| t.contains(&needle))
        {
            // tokio keeps a duplicate of the descriptor (mio's registry clone): the same
            // instance, either will do.
            found = Some(fd);
            break;
        }
    }
    drop(registered);
    found.ok_or_else(|| "cannot find the runtime's epoll descriptor".to_string())
}

impl LocalDriver {
    /// Builds the runtime and starts watching it from Node's loop. `func` is the JS
    /// doorbell, called synchronously inside each turn that queued events.
    pub fn start(
        env: sys::napi_env,
        func: sys::napi_value,
        doorbell: Arc<Doorbell>,
    ) -> Result<*const LocalDriver, String> {
        let uv = Uv::load().ok_or("workerThreads: 0 needs libuv's symbols from Node (Linux only)")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let epfd = driver_fd(&rt)?;
        THREAD.with(|t| t.drives.set(true));
        // SAFETY: plain Node-API calls on the JS thread with its env.
        unsafe {
            let mut func_ref = null_mut();
            sys::napi_create_reference(env, func, 1, &mut func_ref);
            let mut name = null_mut();
            sys::napi_create_string_utf8(env, c"fetch-rs".as_ptr(), 8, &mut name);
            let mut resource = null_mut();
            sys::napi_create_object(env, &mut resource);
            let mut async_ctx = null_mut();
            sys::napi_async_init(env, resource, name, &mut async_ctx);
            let mut uv_loop = null_mut();
            sys::napi_get_uv_event_loop(env, &mut uv_loop);
            let driver = Box::into_raw(Box::new(LocalDriver {
                rt,
                doorbell,
                env,
                func: func_ref,
                async_ctx,
                poll: Box::into_raw(Box::new([0u64; 64])),
                timer: Box::into_raw(Box::new([0u64; 64])),
                uv,
                in_turn: Cell::new(false),
                js_again: Cell::new(false),
                js_gone: Cell::new(false),
                closed: Cell::new(false),
                open_handles: Cell::new(2),
            }));
            let d = &*driver;
            (d.uv.poll_init)(uv_loop.cast(), d.poll.cast(), epfd);
            (*d.poll)[0] = driver as u64;
            (d.uv.poll_start)(d.poll.cast(), 1, on_poll);
            (d.uv.timer_init)(uv_loop.cast(), d.timer.cast());
            (*d.timer)[0] = driver as u64;
            (d.uv.timer_start)(d.timer.cast(), on_timer, 0, 10);
            (d.uv.unref)(d.timer.cast());
            Ok(driver)
        }
    }

    /// JS left events undrained so timers and I/O get their turn: another turn soon,
    /// which calls JS whatever is queued.
    pub fn reschedule(&self) {
        if self.closed.get() {
            return;
        }
        self.js_again.set(true);
        // SAFETY: the timer handle lives until the driver closes.
        unsafe { (self.uv.timer_start)(self.timer.cast(), on_timer, 0, 10) };
    }

    /// Whether the poll handle keeps Node's loop alive (`server.ref()`/`unref()`): unref'd,
    /// it still runs turns while other work keeps the loop going. The timer is always
    /// unref'd.
    pub fn set_ref(&self, on: bool) {
        if self.closed.get() {
            return;
        }
        // SAFETY: the poll handle lives until the driver closes; both calls are idempotent.
        unsafe {
            if on {
                (self.uv.ref_)(self.poll.cast())
            } else {
                (self.uv.unref)(self.poll.cast())
            }
        }
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// One non-blocking turn: run what is ready, poll the sockets, and call JS while
    /// events are queued.
    fn turn(&self) {
        if self.closed.get() || self.js_gone.get() || self.in_turn.replace(true) {
            return;
        }
        let doorbell = &self.doorbell;
        let mut busy = false;
        let outer = THREAD.with(|t| t.turning.replace(Arc::as_ptr(doorbell)));
        self.rt.block_on(async {
            // Each yield lets the runtime run its ready tasks, then poll the sockets and
            // timers without blocking; two get freshly readable connections parsed. Rounds
            // go on while they find work: a task woken by the last poll of a turn would
            // otherwise wait, its readiness consumed, for the next turn.
            for _ in 0..16 {
                let before = work();
                // The round's polls share one clock reading (`clock::Round`); JS, called
                // below, is outside it.
                doorbell.round.open();
                tokio::task::yield_now().await;
                // The first yield ran no task, and its poll of the sockets woke none: the
                // runtime has nothing queued, and a socket ready from now on makes the epoll
                // descriptor readable to Node's loop. The second yield would only poll the
                // sockets again to find nothing (an `epoll_wait` at the end of every turn).
                if work() == before && !doorbell.has_queued() && !self.js_again.get() {
                    doorbell.round.close();
                    busy = false;
                    break;
                }
                tokio::task::yield_now().await;
                doorbell.round.close();
                if self.closed.get() {
                    return;
                }
                if doorbell.has_queued() || self.js_again.take() {
                    if !self.call_js() {
                        busy = false;
                        return;
                    }
                    busy = true;
                    continue;
                }
                if work() == before {
                    busy = false;
                    return;
                }
                busy = true;
            }
        });
        THREAD.with(|t| t.turning.set(outer));
        if busy && !self.closed.get() {
            // More may be waiting in the runtime's queue: another turn once Node's loop
            // has had its own turn.
            // SAFETY: the timer handle lives until the driver closes.
            unsafe { (self.uv.timer_start)(self.timer.cast(), on_timer, 0, 10) };
        } else {
            // Going idle: as a runtime thread about to park, give back what released idle
            // connections left (cheap when none did).
            crate::alloc::give_back_released();
        }
        self.in_turn.set(false);
    }

    /// Calls JS to take the queued events; false where the isolate is terminating.
    fn call_js(&self) -> bool {
        let env = self.env;
        // SAFETY: on the JS thread, outside any other Node-API call.
        unsafe {
            let mut scope = null_mut();
            sys::napi_open_handle_scope(env, &mut scope);
            let mut func = null_mut();
            sys::napi_get_reference_value(env, self.func, &mut func);
            let mut recv = null_mut();
            sys::napi_get_global(env, &mut recv);
            let mut result = null_mut();
            let status = sys::napi_make_callback(env, self.async_ctx, recv, func, 0, std::ptr::null(), &mut result);
            if status == sys::Status::napi_pending_exception {
                let mut e = null_mut();
                sys::napi_get_and_clear_last_exception(env, &mut e);
                // The isolate terminating (`worker.terminate()`) fails every call into JS
                // as an exception too, one without a value. Handing that to
                // `napi_fatal_exception` turn after turn, on a timer of 0 ms, kept the
                // worker's loop from ever reaching its stop: so whether JS can still run is
                // asked of a call to a function that does nothing, which fails only then.
                if js_can_run(env) {
                    sys::napi_fatal_exception(env, e);
                } else {
                    self.js_gone.set(true);
                }
            }
            sys::napi_close_handle_scope(env, scope);
            !self.js_gone.get()
        }
    }

    /// Stops watching; the driver is freed once libuv has closed both handles. Called on
    /// the JS thread while its env is alive (`Core::shutdown`, or `Core`'s drop when the
    /// server object is collected or its env torn down), so the Node-API references go
    /// here: libuv may run the close callbacks after the env's isolate is gone (a worker
    /// thread's last loop run).
    pub fn close(driver: *const LocalDriver) {
        // SAFETY: `driver` came from `start` and is freed only by the last close callback.
        unsafe {
            let d = &*driver;
            if d.closed.replace(true) {
                return;
            }
            sys::napi_delete_reference(d.env, d.func);
            sys::napi_async_destroy(d.env, d.async_ctx);
            (d.uv.close)(d.poll.cast(), Some(on_close));
            (d.uv.close)(d.timer.cast(), Some(on_close));
        }
    }
}

unsafe extern "C" fn on_poll(handle: *mut c_void, _status: c_int, _events: c_int) {
    // SAFETY: the handle's data is the driver, alive until both handles closed.
    let d = unsafe { &*(*(handle as *const u64) as *const LocalDriver) };
    d.turn();
}

/// Whether a call into JS succeeds on `env` now: false while its isolate is terminating.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope, outside any other Node-API call.
unsafe fn js_can_run(env: sys::napi_env) -> bool {
    unsafe extern "C" fn nothing(_env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
        null_mut()
    }
    // SAFETY: as the caller's.
    unsafe {
        let mut f = null_mut();
        if sys::napi_create_function(env, std::ptr::null(), 0, Some(nothing), null_mut(), &mut f)
            != sys::Status::napi_ok
        {
            return false;
        }
        let mut recv = null_mut();
        sys::napi_get_undefined(env, &mut recv);
        let mut result = null_mut();
        let ok = sys::napi_call_function(env, recv, f, 0, std::ptr::null(), &mut result) == sys::Status::napi_ok;
        if !ok {
            let mut e = null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut e);
        }
        ok
    }
}

unsafe extern "C" fn on_timer(handle: *mut c_void) {
    // SAFETY: as `on_poll`.
    let d = unsafe { &*(*(handle as *const u64) as *const LocalDriver) };
    d.turn();
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: as `on_poll`; the last close frees the driver and its handles.
    unsafe {
        let driver = *(handle as *const u64) as *mut LocalDriver;
        let d = &*driver;
        d.open_handles.set(d.open_handles.get() - 1);
        if d.open_handles.get() == 0 {
            let d = Box::from_raw(driver);
            drop(Box::from_raw(d.poll));
            drop(Box::from_raw(d.timer));
            let LocalDriver { rt, .. } = *d;
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::future::Future;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    /// Polls a `Noted` future once on this thread and returns the waker its inner future saw.
    fn waker_seen(drives: bool) -> Waker {
        THREAD.with(|t| t.drives.set(drives));
        let seen: Rc<RefCell<Option<Waker>>> = Rc::default();
        let inner = {
            let seen = seen.clone();
            std::future::poll_fn(move |cx| {
                *seen.borrow_mut() = Some(cx.waker().clone());
                Poll::<()>::Pending
            })
        };
        let mut fut = Box::pin(Noted::new(inner));
        assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        THREAD.with(|t| t.drives.set(false));
        let waker = seen.borrow_mut().take();
        waker.expect("polled")
    }

    #[test]
    fn a_wake_up_counts_as_work_where_a_runtime_is_driven_from_nodes_loop() {
        // A wake-up during the turn's last poll of the sockets must make the turn go on.
        let waker = waker_seen(true);
        let before = work();
        waker.wake();
        assert_ne!(work(), before);
    }

    #[test]
    fn a_task_on_a_runtime_driven_from_nodes_loop_is_woken_from_other_threads() {
        // A guard of the in-thread waker (`note_waker`, and the one borrowed for a poll once
        // the runtime's task vtable is known): clones woken and dropped on other threads, by
        // value and by reference, reach the task; the runtime polls it each time; a clone
        // from a later poll, woken on this thread, counts as work.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        THREAD.with(|t| t.drives.set(true));
        let mut polls = 0;
        let kept = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let keep = kept.clone();
        let task = rt.spawn(Noted::new(std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 4 {
                return Poll::Ready(polls);
            }
            if polls == 3 {
                *keep.lock().expect("lock") = Some(cx.waker().clone());
            }
            let waker = cx.waker().clone();
            let spare = waker.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if polls % 2 == 0 {
                    waker.wake_by_ref();
                } else {
                    waker.wake();
                }
                drop(spare);
            });
            Poll::Pending
        })));
        let before = work();
        let polled = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), task).await });
        assert_eq!(polled.expect("woken in time").expect("joined"), 4);
        assert_ne!(work(), before);
        let before = work();
        kept.lock().expect("lock").take().expect("a waker kept").wake_by_ref();
        assert_ne!(work(), before, "a wake-up of a later poll's waker did not count as work");
        THREAD.with(|t| t.drives.set(false));
    }

    #[test]
    fn elsewhere_the_task_sees_its_own_waker() {
        let waker = waker_seen(false);
        assert!(waker.will_wake(Waker::noop()));
    }
}
