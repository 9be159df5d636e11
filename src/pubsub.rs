//! The JS thread's open WebSockets by id, and the pub/sub topic table: a publish is one
//! native call that frames (and compresses) its message once and queues the same bytes
//! on every subscriber.

use crate::websocket::{self, Handshake, Out, SocketConfig, SocketShared};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

/// Hashes a socket id with one multiplication: ids are ours, not a client's, so SipHash's
/// resistance to chosen keys buys nothing, and it was a lookup's main cost (one per
/// message, in `JsSide::apply`). The multiplication spreads the sequential ids over the
/// high bits too, which the table's probing also uses.
#[derive(Default)]
pub(crate) struct SidHasher(u64);

impl Hasher for SidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type SidMap<V> = HashMap<u32, V, BuildHasherDefault<SidHasher>>;

/// One publish: the message, its topic, and the socket left out (0: none).
pub struct Publish<'a> {
    pub topic: &'a str,
    pub payload: Bytes,
    pub text: bool,
    pub compress: bool,
    pub except: u32,
}

/// The most bytes of frames the in-thread batch buffer (`JsSide::published`) takes
/// between two flushes; later publishes and sends are copied into each socket's queue. Keeps
/// its offsets within the 21 bits a queue packs them in (`SendQueue::shared`).
pub(crate) const PUBLISHED_MAX: usize = 1024 * 1024;

/// A socket as the JS thread holds it.
pub(crate) struct LiveSocket {
    pub shared: Arc<SocketShared>,
    pub remote: SocketAddr,
    /// The handshake to answer with, until the 101 goes out.
    pub handshake: Option<Handshake>,
    /// The agreed `Sec-WebSocket-Extensions` value, "" for none.
    pub extensions: String,
    /// Binary messages above `js_side::POOLED_MAX` get an ArrayBuffer each, not a share of
    /// the drain's (`Core::ws_own_buffers`).
    pub own_buffers: bool,
    topics: HashSet<String>,
}

/// Open sockets by id, and who is subscribed to what.
#[derive(Default)]
pub(crate) struct Sockets {
    next: u32,
    live: SidMap<LiveSocket>,
    /// Each topic's subscribers, with their shared state at hand: a publish reaches every
    /// subscriber without a lookup of its `LiveSocket`.
    topics: HashMap<String, SidMap<Arc<SocketShared>>>,
}

impl Sockets {
    /// Registers a socket about to be accepted; returns its id (never 0).
    pub fn insert(
        &mut self,
        config: SocketConfig,
        remote: SocketAddr,
        handshake: Handshake,
        doorbell: Arc<crate::bridge::Doorbell>,
    ) -> u32 {
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.live.contains_key(&self.next) {
                break;
            }
        }
        let sid = self.next;
        let shared = SocketShared::new(sid, config, doorbell);
        let extensions = handshake.extensions.clone().unwrap_or_default();
        let live = LiveSocket {
            shared,
            remote,
            handshake: Some(handshake),
            extensions,
            own_buffers: false,
            topics: HashSet::new(),
        };
        self.live.insert(sid, live);
        sid
    }

    pub fn get(&self, sid: u32) -> Option<&LiveSocket> {
        self.live.get(&sid)
    }

    pub fn get_mut(&mut self, sid: u32) -> Option<&mut LiveSocket> {
        self.live.get_mut(&sid)
    }

    /// Forgets a closed socket and its subscriptions.
    pub fn remove(&mut self, sid: u32) -> Option<LiveSocket> {
        let s = self.live.remove(&sid)?;
        for t in &s.topics {
            if let Some(subs) = self.topics.get_mut(t) {
                subs.remove(&sid);
                if subs.is_empty() {
                    self.topics.remove(t);
                }
            }
        }
        Some(s)
    }

    /// Subscribes (`on`) or unsubscribes; returns whether that changed anything.
    pub fn subscribe(&mut self, sid: u32, topic: &str, on: bool) -> bool {
        let Some(s) = self.live.get_mut(&sid) else { return false };
        if on {
            if !s.topics.insert(topic.to_string()) {
                return false;
            }
            self.topics.entry(topic.to_string()).or_default().insert(sid, s.shared.clone());
            true
        } else {
            if !s.topics.remove(topic) {
                return false;
            }
            if let Some(subs) = self.topics.get_mut(topic) {
                subs.remove(&sid);
                if subs.is_empty() {
                    self.topics.remove(topic);
                }
            }
            true
        }
    }

    pub fn is_subscribed(&self, sid: u32, topic: &str) -> bool {
        self.live.get(&sid).is_some_and(|s| s.topics.contains(topic))
    }

    /// How many sockets are subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |subs| subs.len())
    }

    /// The topics a socket is subscribed to.
    pub fn topics_of(&self, sid: u32) -> Vec<String> {
        self.live.get(&sid).map(|s| s.topics.iter().cloned().collect()).unwrap_or_default()
    }

    /// Sends a message to every subscriber of `m.topic` but `m.except`; returns how many
    /// took it. The frame is encoded once, and compressed once for the subscribers that
    /// agreed on permessage-deflate (no context takeover makes one frame valid for all).
    /// `published`: the JS side's batch buffer in the in-thread mode, where a small
    /// uncompressed frame goes once for all its subscribers (`SocketShared::queue_shared`).
    pub fn publish(&self, m: Publish<'_>, published: Option<&mut BytesMut>, wake: &mut Vec<Arc<SocketShared>>) -> u32 {
        // Two copies of the loop, one a mode: the worker-thread mode's keeps its former
        // code, without the shared buffer's checks (12 instructions a delivery, callgrind).
        match published {
            Some(b) => self.publish_each(m, Some(b), wake),
            None => self.publish_each(m, None, wake),
        }
    }

    #[inline(always)]
    fn publish_each(
        &self,
        m: Publish<'_>,
        mut published: Option<&mut BytesMut>,
        wake: &mut Vec<Arc<SocketShared>>,
    ) -> u32 {
        let Publish { topic, payload, text, compress, except } = m;
        let Some(subs) = self.topics.get(topic) else { return 0 };
        let opcode = if text { websocket::OP_TEXT } else { websocket::OP_BINARY };
        let len = payload.len();
        let compressing = compress && len >= websocket::COMPRESS_MIN;
        let mut plain: Option<Bytes> = None;
        let mut packed: Option<Bytes> = None;
        // Where the frame lies in `published`, once put there (`None` inside: no room).
        let plain_len = websocket::header_len(len) + len;
        let mut placed: Option<Option<(usize, usize)>> = None;
        let mut n = 0;
        for (sid, s) in subs {
            // Not yet accepted: no frame may go before the 101.
            if *sid == except || !s.is_accepted() {
                continue;
            }
            if !(compressing && s.config.deflate.is_some()) && plain_len <= websocket::COALESCE_LIMIT {
                if let Some(buf) = published.as_deref_mut() {
                    let at = *placed.get_or_insert_with(|| {
                        let start = buf.len();
                        (start + plain_len <= PUBLISHED_MAX).then(|| {
                            websocket::put_frame(buf, opcode, &payload);
                            (start, buf.len())
                        })
                    });
                    if let Some((start, end)) = at {
                        if s.queue_shared(len, &buf[..], start, end).is_some() {
                            n += 1;
                            if s.wants_wake() {
                                wake.push(s.clone());
                            }
                        }
                        continue;
                    }
                }
            }
            let frame = match s.config.deflate {
                Some(d) if compressing => packed.get_or_insert_with(|| {
                    // The smallest window any deflating subscriber allows, looked for at the
                    // first one: a topic without them is not walked twice a publish.
                    let b = subs
                        .values()
                        .filter_map(|s| s.config.deflate.map(|d| d.server_window_bits))
                        .fold(d.server_window_bits, u8::min);
                    let z = websocket::deflate(&mut websocket::compressor(b), &payload);
                    websocket::encode_frame(opcode, true, &z)
                }),
                _ => plain.get_or_insert_with(|| websocket::encode_frame(opcode, false, &payload)),
            };
            // A small frame is copied into the subscriber's queue (`queue_framed`): cheaper
            // than a reference to the shared one, counted up and down from every thread.
            let queued = if frame.len() <= websocket::COALESCE_LIMIT {
                s.queue_framed(len, frame.len(), false, |b| b.extend_from_slice(frame))
            } else {
                s.queue(Out::Encoded { frame: frame.clone(), payload_len: len }, len, false)
            };
            if queued.is_some() {
                n += 1;
                if s.wants_wake() {
                    wake.push(s.clone());
                }
            }
        }
        n
    }
}
