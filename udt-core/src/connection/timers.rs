//! The per-connection protocol timers on the SYN scale: ACK, NAK, EXP,
//! keep-alive, peer-idle and linger, and what each does when it fires.
//! Deadlines are derived from connection state each time they are asked
//! for, so no timer can go stale.

use std::time::{Duration, Instant};

use super::output::ControlItem;
use super::{Connection, State};
use crate::time::{MIN_EXP_INTERVAL, SYN_INTERVAL};

/// The protocol timers of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// UDT draft §4 "ACK timer": send a full or medium ACK every SYN while
    /// there is something the sender has not confirmed.
    Ack,
    /// Periodic NAK: report the whole receiver loss list again. UDT4 4.11
    /// computes this timer but never fires it; we do (docs/divergences.md).
    Nak,
    /// UDT draft §4 "EXP timer": retransmission timeout with backoff while
    /// data is unacknowledged.
    Exp,
    /// The sender's own loss detection (congestion-control.md §7.5): the
    /// first unacknowledged packet has been missing longer than an ACK
    /// takes to report it, even if the peer has fallen silent.
    LossDetection,
    /// Keep-alive: something must reach the peer at least this often so it
    /// does not declare us dead.
    KeepAlive,
    /// Data is in flight and the line has been quiet both ways for an ACK
    /// period (and 2.5 ms): one keep-alive lets a UDT4 receiver's timers
    /// run, so its ACK leaves now rather than at its next 100 ms sweep.
    /// Once per silence; counted in [`Stats::ack_nudges_sent`](crate::stats::Stats::ack_nudges_sent).
    AckNudge,
    /// The peer has been silent for the configured idle timeout: it is dead.
    Idle,
    /// Close gave up waiting for the peer to acknowledge the last data, or
    /// for its application to read it.
    Linger,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` fires them.
    pub const ALL: [Timer; 8] = [
        Timer::Idle,
        Timer::Linger,
        Timer::Exp,
        Timer::LossDetection,
        Timer::Nak,
        Timer::Ack,
        Timer::KeepAlive,
        Timer::AckNudge,
    ];
}

/// The longest silence before a keep-alive (UDT4 sends one on every EXP
/// expiry, about every 0.3 s; once a second keeps idle connections cheap
/// and is still far below any peer's dead-peer detection).
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// How late past an ACK period an ACK may be before the sender nudges
/// the receiver: room for the jitter of a receiver whose timer does run on
/// its own. Not the RTT variation: into libudt0 that starts at tens of
/// milliseconds (its receiver folds its first samples into UDT4's initial
/// 100 ms at 1/8), and a nudge 45-60 ms late left Startup's rounds too
/// slow to grow the window.
const ACK_NUDGE_MARGIN: Duration = Duration::from_micros(2_500);

/// Grid points per keep-alive interval (`Connection::align_soft_timers`).
const KEEPALIVE_GRID_STEPS: u32 = 4;

impl Connection {
    /// When `timer` is next due, or `None` when it is not armed.
    pub fn timer_deadline(&self, timer: Timer) -> Option<Instant> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        match timer {
            Timer::Ack => {
                let period = self
                    .cc
                    .ack_period()
                    .unwrap_or(SYN_INTERVAL)
                    .min(SYN_INTERVAL);
                self.receiver.ack_deadline(self.last_now, &self.rtt, period)
            }
            Timer::Nak => self
                .receiver
                .delayed_nak_deadline(self.rtt.rtt())
                .into_iter()
                .chain(self.periodic_nak_deadline())
                .min(),
            Timer::Exp => {
                if self.sender.unacked() == 0 {
                    None
                } else {
                    Some(self.exp_base + self.exp_interval())
                }
            }
            Timer::LossDetection => self.head_loss_deadline(),
            Timer::KeepAlive => Some(self.keepalive_due()),
            Timer::AckNudge => self.ack_nudge_due(),
            Timer::Idle => Some(self.last_heard + self.config.peer_idle_timeout),
            Timer::Linger => match self.state {
                State::Closing { deadline } => deadline,
                _ => None,
            },
        }
    }

    /// UDT4 EXP interval: `max(n·(RTT + 4·RTTVar + SYN), n·300 ms)` for the
    /// n-th expiry, or the controller's RTO. Capped so that, after an
    /// outage shorter than the idle timeout, retransmissions resume before
    /// the peer declares us dead.
    pub(crate) fn exp_interval(&self) -> Duration {
        let n = self.exp_count.max(1);
        let one = self.rtt.rtt() + 4 * self.rtt.rtt_var() + SYN_INTERVAL;
        let interval = match self.cc.rto() {
            Some(rto) => rto * n,
            None => (one * n).max(MIN_EXP_INTERVAL * n),
        };
        let cap = (self.config.peer_idle_timeout / 4)
            .max(one)
            .max(MIN_EXP_INTERVAL);
        interval.min(cap)
    }

    fn keepalive_interval(&self) -> Duration {
        KEEPALIVE_INTERVAL.min(self.config.peer_idle_timeout / 4)
    }

    /// The keep-alive deadline: a keep-alive interval after the last send,
    /// rounded up to the grid of [`align_soft_timers`](Self::align_soft_timers).
    fn keepalive_due(&self) -> Instant {
        let earliest = self.last_send_time + self.keepalive_interval();
        let grid = self.keepalive_interval() / KEEPALIVE_GRID_STEPS;
        let Some(origin) = self.timer_origin else {
            return earliest;
        };
        let Some(since) = earliest.checked_duration_since(origin) else {
            return earliest;
        };
        let grid_nanos = grid.as_nanos().max(1);
        let steps = since.as_nanos().div_ceil(grid_nanos);
        let offset = steps.saturating_mul(grid_nanos);
        u64::try_from(offset)
            .ok()
            .and_then(|n| origin.checked_add(Duration::from_nanos(n)))
            .unwrap_or(earliest)
    }

    /// When to nudge the peer for an ACK: an ACK period (and a margin)
    /// after the later of the last datagram heard and the last one sent,
    /// while data is unacknowledged and no nudge went out since the peer
    /// was last heard from; `None` otherwise.
    ///
    /// A UDT4 receiver checks a connection's timers only when a datagram
    /// of that connection arrives, and otherwise once every 100 ms
    /// (udt4-protocol.md §7, "timer check cadence"). A sender that sent
    /// its whole window within one ACK period and then waits for the ACK
    /// sends nothing that would arrive after the receiver's ACK timer
    /// expired, so the ACK waited for the sweep: on loopback into libudt0,
    /// Startup's rounds of 32 packets took 104 ms each instead of ~10, the
    /// bandwidth plateaued at ~640 packets/s and Startup ended there. Any
    /// datagram will do; a keep-alive changes no state at either end.
    /// Against a receiver whose ACK timer runs on its own (ours) the ACK
    /// comes first and the nudge is never due. One nudge per silence: it
    /// arrives after the receiver's ACK timer expired (the later of what we
    /// heard and sent last is no earlier than that ACK left), so if no ACK
    /// follows, the receiver had nothing new to acknowledge, and a silent
    /// or dead peer is the EXP timer's business, not a stream of
    /// keep-alives.
    pub(crate) fn ack_nudge_due(&self) -> Option<Instant> {
        if self.ack_nudged || self.sender.unacked() == 0 {
            return None;
        }
        let quiet_since = self.last_heard.max(self.last_send_time);
        Some(quiet_since + SYN_INTERVAL + ACK_NUDGE_MARGIN)
    }

    /// Fires every timer that is due at `now`.
    pub(crate) fn fire_due_timers(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if let Some(at) = self.timer_deadline(timer) {
                if at <= now {
                    self.on_timer(now, timer);
                }
            }
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Ack => self.send_ack(now),
            Timer::Nak => self.on_nak_timer(now),
            Timer::Exp => self.on_exp(now),
            Timer::LossDetection => self.on_loss_detection_timer(now),
            Timer::KeepAlive => self.queue_keepalive(now),
            Timer::AckNudge => self.queue_ack_nudge(now),
            Timer::Idle => {
                log::info!(
                    "{} peer {} silent for {:?}: connection timed out",
                    self.local_id,
                    self.peer_addr,
                    self.config.peer_idle_timeout
                );
                self.enter_closed(now, crate::error::ConnectionError::TimedOut);
            }
            Timer::Linger => {
                // Data still unacknowledged is the worse news; otherwise the
                // peer acknowledged everything but had not read it all.
                let reason = if self.sender.buffer().is_empty() {
                    crate::error::ConnectionError::PeerUnread
                } else {
                    crate::error::ConnectionError::LingerExpired
                };
                log::info!(
                    "{} linger expired with {} packets unacknowledged and {} the peer has not read",
                    self.local_id,
                    self.sender.unacked(),
                    self.sender.peer_unread()
                );
                self.queue_shutdown();
                self.enter_closed(now, reason);
            }
        }
    }

    /// The ACK timer (UDT4 `sendCtrl(2)`, §6.4).
    fn send_ack(&mut self, now: Instant) {
        // The receive buffer, and with it the window the ACK advertises,
        // follows the bandwidth-delay product of the data arriving.
        let speed = self.receiver.recv_speed();
        let rtt = self.rtt.rtt();
        // Asked at every ACK, not only once the speed is known: the
        // question also forgets the advertisements older than a round trip.
        let limited = self.receiver.is_window_limited(now, rtt);
        if speed > 0 && limited {
            if let Some(packets) = self.recv_sizer.observe(f64::from(speed), rtt, now) {
                log::debug!(
                    "{} receive buffer grows to {packets} packets",
                    self.local_id
                );
                self.receiver.grow_buffer(packets);
            }
        }
        if let Some(ack) = self.receiver.build_ack(now, &self.rtt) {
            self.queue_control(ControlItem::Ack(ack));
            self.counters.acks_sent += 1;
        }
    }

    /// When the periodic NAK is due, if it is on and anything is missing.
    fn periodic_nak_deadline(&self) -> Option<Instant> {
        if self.config.periodic_nak {
            self.receiver.nak_deadline(&self.rtt)
        } else {
            None
        }
    }

    /// The NAKs the reordering window held, and the periodic NAK, each if
    /// due.
    fn on_nak_timer(&mut self, now: Instant) {
        for (first, last) in self.receiver.take_due_naks(now, self.rtt.rtt()) {
            // A NAK lost to a full queue is repeated by the periodic one.
            self.queue_control(ControlItem::Nak(first, last));
        }
        if self.periodic_nak_deadline().is_none_or(|due| due > now) {
            return;
        }
        if self.receiver.on_nak_timer(now) && !self.queue_control(ControlItem::NakList) {
            // Dropped with the queue full: the next period must try again.
            self.receiver.nak_list_dropped();
        }
    }

    /// The EXP timer (UDT4 `checkTimers`, §7): a retransmission timeout if
    /// data is outstanding, and one more backoff step either way.
    fn on_exp(&mut self, now: Instant) {
        // What the sender's own loss detection saw when the EXP timer had
        // to step in (each such timeout resends the whole window).
        log::debug!(
            "{} EXP: head {:?} (proof doubted, since), peer heard {:?} ago, {} in flight of {} unacknowledged, window {:.0}",
            self.local_id,
            self.head_candidate()
                .map(|h| (h.seq, h.proof_doubted, now.saturating_duration_since(h.since))),
            now.saturating_duration_since(self.last_heard),
            self.sender.pipe(),
            self.sender.unacked(),
            self.sender.cwnd(),
        );
        if self.sender.on_timeout(now) {
            self.counters.timeouts += 1;
            let ctx = self.cc_context(now);
            self.cc.on_timeout(&ctx);
            self.apply_cc();
        }
        log::debug!(
            "{} EXP #{} after {:?}",
            self.local_id,
            self.exp_count,
            now.saturating_duration_since(self.exp_base)
        );
        self.exp_count = self.exp_count.saturating_add(1);
        self.exp_base = now;
    }

    /// The keep-alive timer: something must reach the peer. It fires only
    /// after a second without sending anything, so it is also when the
    /// memory a burst left in the buffers goes back (issue 10).
    fn queue_keepalive(&mut self, now: Instant) {
        self.sender.trim();
        self.receiver.trim();
        self.counters.keepalives_sent += 1;
        self.queue_keepalive_packet(now);
    }

    /// Queues a keep-alive, marking the time now so that neither timer
    /// that sends one fires again before the driver drains the queue.
    fn queue_keepalive_packet(&mut self, now: Instant) {
        self.last_send_time = now;
        self.queue_control(ControlItem::KeepAlive);
    }

    /// The ACK nudge: a keep-alive, without the keep-alive timer's trim
    /// (data is in flight).
    fn queue_ack_nudge(&mut self, now: Instant) {
        log::trace!(
            "{} no ACK for {:?}: nudging the peer",
            self.local_id,
            now.saturating_duration_since(self.last_heard)
        );
        self.ack_nudged = true;
        self.counters.ack_nudges_sent += 1;
        self.queue_keepalive_packet(now);
    }
}
