//! A future polled only after it woke its task (and at its first poll). The server's phase
//! watch that every connection and WebSocket task waits on takes the lock of its waiter
//! list at each poll; wrapped in `WhenWoken`, a task that runs at every read or request pays
//! a flag's load instead (about 1.4% of a small request's instructions).
//!
//! The flag and the task's registration live in an allocation of their own (`FlagWake`) or,
//! through `WakeFlag`, in a structure the task reads anyway at each poll (a WebSocket's
//! idle timer, whose flag sits beside the socket's `closing`): the flag's load then finds a
//! line already in cache instead of one more line a wake-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

pub struct WhenWoken<F, H: WakeFlag = FlagWake> {
    fut: Pin<Box<F>>,
    flag: Arc<H>,
    /// `flag` as the waker `fut` sees.
    waker: Waker,
    /// The task's waker as registered in `flag`: registered again only when it changed or a
    /// wake-up took it (an atomic read-modify-write saved per poll).
    registered: Option<Waker>,
}

/// Where a `WhenWoken` keeps its flag and the task's registration; its `Wake` must call
/// `raise` (the waker `fut` sees is made of it).
pub trait WakeFlag: std::task::Wake + Send + Sync + 'static {
    /// Set when `fut` woke the task (and at the start).
    fn woken(&self) -> &AtomicBool;
    /// The task to wake.
    fn task(&self) -> &atomic_waker::AtomicWaker;
}

/// A `WakeFlag`'s wake-up: the flag, then the task.
pub fn raise<H: WakeFlag>(h: &H) {
    h.woken().store(true, Ordering::Release);
    h.task().wake();
}

/// A flag in an allocation of its own.
pub struct FlagWake {
    woken: AtomicBool,
    task: atomic_waker::AtomicWaker,
}

impl std::task::Wake for FlagWake {
    fn wake(self: Arc<Self>) {
        raise(&*self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        raise(&**self);
    }
}

impl WakeFlag for FlagWake {
    fn woken(&self) -> &AtomicBool {
        &self.woken
    }

    fn task(&self) -> &atomic_waker::AtomicWaker {
        &self.task
    }
}

impl<F: Future> WhenWoken<F> {
    pub fn new(fut: F) -> Self {
        Self::with_flag(
            fut,
            Arc::new(FlagWake { woken: AtomicBool::new(true), task: atomic_waker::AtomicWaker::new() }),
        )
    }
}

impl<F: Future, H: WakeFlag> WhenWoken<F, H> {
    /// `fut` with its flag in `flag`, which no other `WhenWoken` may use.
    pub fn with_flag(fut: F, flag: Arc<H>) -> Self {
        // Polled at the first poll, which registers the task.
        flag.woken().store(true, Ordering::Release);
        WhenWoken { fut: Box::pin(fut), waker: Waker::from(flag.clone()), flag, registered: None }
    }

    /// The future, to read.
    pub fn get(&self) -> &F {
        &self.fut
    }

    /// The future, to change (a timer reset): it is polled at the next poll, woken or not,
    /// so that it registers again if the change needs it.
    pub fn change(&mut self) -> Pin<&mut F> {
        self.flag.woken().store(true, Ordering::Release);
        self.fut.as_mut()
    }
}

impl<F: Future, H: WakeFlag> Future for WhenWoken<F, H> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Registered before the flag is read: a wake-up after the read finds the task.
        if !this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            this.flag.task().register(cx.waker());
            this.registered = Some(cx.waker().clone());
        }
        let woken = this.flag.woken();
        if !(woken.load(Ordering::Acquire) && woken.swap(false, Ordering::AcqRel)) {
            return Poll::Pending;
        }
        // The wake-up took the registration: back before `fut` looks, so that a change
        // after its look wakes the task again.
        this.flag.task().register(cx.waker());
        this.fut.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}
