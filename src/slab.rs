//! The requests the JS thread holds, by generational id: `RequestSlab`, and what it keeps
//! for each request (its body's state, a streamed response, the reader to cancel).

use crate::body::BodyErrorKind;
use crate::bridge::RequestRecord;
use crate::wire::{INDEX_BITS, INDEX_MASK};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::{oneshot, Notify};

/// Generations wrap below this: they fill the bits above the index.
const GEN_LIMIT: u32 = 1 << (32 - INDEX_BITS);

/// A JS-visible request id: slot index plus generation, so a stale id never reaches
/// a later request in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(pub u32);

impl SlotId {
    fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }
    fn generation(self) -> u32 {
        self.0 >> INDEX_BITS
    }
}

/// The JS thread's view of a request body.
pub enum BodyState {
    None,
    /// On the wire, not asked for yet.
    Unread(crate::direct::Source),
    /// Complete and waiting to be taken.
    Buffered(crate::body::Collected),
    /// Complete in a JS Buffer (a body of declared length), waiting to be taken.
    Filled(crate::lending::JsBody),
    /// A body of declared length whose Buffer waits for a later turn (`Core::body_resume`);
    /// its bytes wait in the socket meanwhile. A `BODY_FULL` or `BODY_ERROR` record follows.
    Deferred(crate::direct::Source),
    /// A reader task collects it; a `BODY_FULL` or `BODY_ERROR` record follows.
    Collecting,
    /// A reader task streams it one pull at a time.
    Streaming {
        credit: Arc<Notify>,
        chunks: VecDeque<Bytes>,
        ended: bool,
    },
    Taken,
    Failed(BodyErrorKind),
}

/// A streamed response in progress.
pub struct ResponseStream {
    pub tx: tokio::sync::mpsc::Sender<crate::body::StreamItem>,
    pub waiting: Arc<AtomicBool>,
}

/// Everything the JS thread holds for one request until JS releases it.
pub struct LiveRequest {
    pub req: RequestRecord,
    pub body: BodyState,
    pub stream: Option<ResponseStream>,
    pub cancel_reader: Option<oneshot::Sender<()>>,
}

struct Slot {
    generation: u32,
    live: Option<LiveRequest>,
}

/// Requests owned by the JS thread, addressed by `SlotId`.
#[derive(Default)]
pub struct RequestSlab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl RequestSlab {
    /// Holds a new request, without a body yet (`BodyState::None`). The slot is written
    /// here, field by field: a `LiveRequest` made by the caller was made aside and copied in
    /// (136 bytes, a `memcpy` call).
    #[inline(always)]
    pub fn insert(&mut self, req: RequestRecord) -> SlotId {
        let live = || LiveRequest { req, body: BodyState::None, stream: None, cancel_reader: None };
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.live = Some(live());
            return SlotId((slot.generation << INDEX_BITS) | index);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot { generation: 1, live: Some(live()) });
        SlotId((1 << INDEX_BITS) | index)
    }

    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut LiveRequest> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.live.as_mut()
    }

    pub fn get(&self, id: SlotId) -> Option<&LiveRequest> {
        let slot = self.slots.get(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.live.as_ref()
    }

    pub fn remove(&mut self, id: SlotId) -> Option<LiveRequest> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() || slot.live.is_none() {
            return None;
        }
        let live = slot.live.take();
        self.free_slot(id);
        live
    }

    /// `remove` for the record alone: the rest of the request is dropped in place, and only
    /// the record moves out (a whole `LiveRequest` moved out was a 136-byte `memcpy` call).
    #[inline(always)]
    pub fn remove_record(&mut self, id: SlotId) -> Option<RequestRecord> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        // Every field named, without `..`: a field added to `LiveRequest` fails to compile
        // here until it is dropped below too (the slot is overwritten without a drop).
        let LiveRequest { req, body, stream, cancel_reader } = slot.live.as_mut()?;
        // Dropped first, by assignment: a drop that panics leaves the slot whole. Each only
        // when there is something to drop (most requests have none of the three).
        if !matches!(body, BodyState::None) {
            *body = BodyState::None;
        }
        if stream.is_some() {
            *stream = None;
        }
        if cancel_reader.is_some() {
            *cancel_reader = None;
        }
        // SAFETY: the record is read once, and the slot overwritten at once without a drop
        // (`ptr::write`), so it is not dropped there too; the other fields hold nothing to
        // drop any more, and nothing between the two can panic.
        let req = unsafe {
            let req = std::ptr::read(req);
            std::ptr::write(&mut slot.live, None);
            req
        };
        self.free_slot(id);
        Some(req)
    }

    /// Ends the generation of `id`'s slot, now empty, and lists it as free; `None` if `id`
    /// is not the slot's current generation (nothing is changed then).
    #[inline(always)]
    fn free_slot(&mut self, id: SlotId) -> Option<()> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        // Generation 0 is never issued, so an id is never 0.
        slot.generation = (slot.generation + 1) % GEN_LIMIT;
        if slot.generation == 0 {
            slot.generation = 1;
        }
        self.free.push(id.index() as u32);
        Some(())
    }

    /// The number of live requests (tests of slot reuse).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.live.is_some()).count()
    }

    /// Drops every live request, answering none of them (the server is gone).
    pub fn clear(&mut self) {
        let ids: Vec<SlotId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live.is_some())
            .map(|(i, s)| SlotId((s.generation << INDEX_BITS) | i as u32))
            .collect();
        for id in ids {
            self.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::RequestBody;

    /// A GET request with no body, as a connection task would send it.
    fn dummy() -> crate::bridge::RequestRecord {
        let (_, req) = crate::bridge::Ticket::with_record(|| crate::bridge::IncomingRequest {
            method: http::Method::GET,
            text: Default::default(),
            body: RequestBody::None,
            remote: "127.0.0.1:1".parse().unwrap(),
            websocket: None,
            tls: None,
            http2: false,
        });
        req
    }

    #[test]
    fn stale_ids_do_not_reach_a_reused_slot() {
        let mut slab = RequestSlab::default();
        let a = slab.insert(dummy());
        assert!(slab.remove(a).is_some());
        let b = slab.insert(dummy());
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert!(slab.get(a).is_none());
        assert!(slab.remove(a).is_none());
        assert!(slab.get(b).is_some());
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn remove_record_takes_the_record_and_frees_the_slot_once() {
        let mut slab = RequestSlab::default();
        let a = slab.insert(dummy());
        if let Some(live) = slab.get_mut(a) {
            live.body = BodyState::Buffered(bytes::Bytes::from_static(b"body").into());
        }
        let ticket = slab.get(a).map(|l| l.req.ticket().clone()).unwrap();
        let req = slab.remove_record(a).unwrap();
        assert!(std::sync::Arc::ptr_eq(req.ticket(), &ticket));
        assert!(slab.get(a).is_none());
        assert!(slab.remove_record(a).is_none());
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.len(), 0);
        // The slot is reused once, under a new id.
        let b = slab.insert(dummy());
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert_eq!(slab.free.len(), 0);
        drop(req);
    }

    #[test]
    fn ids_are_never_zero() {
        let mut slab = RequestSlab::default();
        let id = slab.insert(dummy());
        assert_ne!(id.0, 0);
    }
}
