//! What health messages may cost (PROTOCOL.md §6): the answers a trace of
//! this node takes in, and the bytes of answers a link carries out.
//!
//! A health request costs its sender a few bytes and every answer costs
//! its responder a route table. The engine answers only over the link a
//! request came on, from an origin whose route uses that link; these
//! bounds keep what is left (honest traces of a large mesh, or forged
//! answers) from crowding data out of the control queues or filling
//! memory while a trace waits.

use hashbrown::HashMap;

use super::ratelimit::{Rate, TokenBucket};
use super::stats::DropReason;
use super::LinkId;

/// Most traces of this node awaiting answers at once; a new one ends the
/// oldest.
pub const MAX_TRACES: usize = 8;

/// Most answers one trace takes in.
pub const MAX_TRACE_ANSWERS: u32 = 4096;

/// Most bytes of answers (as received) one trace takes in.
pub const MAX_TRACE_BYTES: u64 = 4 << 20;

/// Bytes of health responses, answered or forwarded, that one link
/// carries out of this node: 256 KiB a second, 1 MiB at once. They are
/// control messages, sent ahead of data frames, so this is the most of a
/// link's capacity they can take from data.
pub const ANSWER_BYTES: Rate = Rate { per_sec: 256 << 10, burst: 1 << 20 };

/// The traces of this node awaiting answers.
#[derive(Debug, Default)]
pub struct Traces {
    pending: Vec<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    until: u64,
    answers: u32,
    bytes: u64,
}

impl Traces {
    /// No trace under way.
    pub fn new() -> Traces {
        Traces::default()
    }

    /// Starts awaiting answers to request `id` until `until` (monotonic ms).
    pub fn start(&mut self, id: u64, until: u64, now: u64) {
        self.pending.retain(|p| p.until >= now);
        if self.pending.len() >= MAX_TRACES {
            if let Some(i) = (0..self.pending.len()).min_by_key(|&i| self.pending[i].until) {
                self.pending.swap_remove(i);
            }
        }
        self.pending.push(Pending { id, until, answers: 0, bytes: 0 });
    }

    /// Takes in an answer of `len` bytes to request `id`, or says why not:
    /// no trace of ours awaits it ([`DropReason::Unsolicited`]), or its
    /// trace has taken in all it may ([`DropReason::HealthBytes`]).
    pub fn accept(&mut self, id: u64, len: usize, now: u64) -> Result<(), DropReason> {
        let Some(p) = self.pending.iter_mut().find(|p| p.id == id && p.until >= now) else {
            return Err(DropReason::Unsolicited);
        };
        let bytes = p.bytes.saturating_add(len as u64);
        if p.answers >= MAX_TRACE_ANSWERS || bytes > MAX_TRACE_BYTES {
            return Err(DropReason::HealthBytes);
        }
        p.answers += 1;
        p.bytes = bytes;
        Ok(())
    }

    /// Traces awaiting answers (at most [`MAX_TRACES`]).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no trace awaits answers.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Bytes of health responses each link may still carry out.
#[derive(Debug, Default)]
pub struct AnswerBudgets {
    links: HashMap<LinkId, TokenBucket>,
}

impl AnswerBudgets {
    /// Full budgets for every link.
    pub fn new() -> AnswerBudgets {
        AnswerBudgets::default()
    }

    /// Whether `link` may carry `len` more bytes of answers now (and if so,
    /// counts them).
    pub fn allow(&mut self, link: LinkId, len: usize, now: u64) -> bool {
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        self.links.entry(link).or_insert_with(|| TokenBucket::full(ANSWER_BYTES, now)).allow_n(
            ANSWER_BYTES,
            now,
            n,
        )
    }

    /// Forgets the links `up` rejects (links that went down).
    pub fn retain(&mut self, mut up: impl FnMut(LinkId) -> bool) {
        self.links.retain(|l, _| up(*l));
    }

    /// Links with a budget in use.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no link has a budget in use.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_our_traces_while_they_wait() {
        let mut t = Traces::new();
        assert_eq!(t.accept(7, 100, 0), Err(DropReason::Unsolicited));
        t.start(7, 2_000, 0);
        assert_eq!(t.accept(7, 100, 1_000), Ok(()));
        assert_eq!(t.accept(8, 100, 1_000), Err(DropReason::Unsolicited), "another id");
        assert_eq!(t.accept(7, 100, 2_001), Err(DropReason::Unsolicited), "too late");
    }

    #[test]
    fn a_trace_takes_in_a_bounded_total() {
        let mut t = Traces::new();
        t.start(1, 10_000, 0);
        // forged answers of 60 KiB each: the bytes bound ends them
        let big = 60 << 10;
        let took = (0..1000).take_while(|_| t.accept(1, big, 5).is_ok()).count() as u64;
        assert_eq!(took, MAX_TRACE_BYTES / big as u64);
        assert_eq!(t.accept(1, big, 5), Err(DropReason::HealthBytes));
        // small answers: the count bound
        t.start(2, 10_000, 0);
        let took = (0..10_000).take_while(|_| t.accept(2, 30, 5).is_ok()).count();
        assert_eq!(took, MAX_TRACE_ANSWERS as usize);
    }

    #[test]
    fn traces_under_way_are_bounded() {
        let mut t = Traces::new();
        for id in 0..100 {
            t.start(id, 1_000 + id, 0);
            assert!(t.len() <= MAX_TRACES);
        }
        assert_eq!(t.accept(99, 10, 0), Ok(()), "the newest stays");
        assert_eq!(t.accept(0, 10, 0), Err(DropReason::Unsolicited), "the oldest went");
        t.start(200, 5_000, 4_000);
        assert_eq!(t.len(), 1, "finished traces are forgotten");
    }

    #[test]
    fn a_link_carries_a_bounded_rate_of_answers() {
        let mut b = AnswerBudgets::new();
        let (l, other) = (LinkId(1), LinkId(2));
        let answer = 64 << 10;
        let burst = (0..100).take_while(|_| b.allow(l, answer, 0)).count();
        assert_eq!(burst, 16, "1 MiB at once");
        assert!(b.allow(other, answer, 0), "other links have their own budget");
        assert!(!b.allow(l, answer, 100));
        assert!(b.allow(l, answer, 250), "256 KiB a second");
        b.retain(|x| x == other);
        assert_eq!(b.len(), 1);
    }
}
