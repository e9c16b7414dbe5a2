//! The per-connection protocol timers on the SYN scale: ACK, NAK, EXP,
//! keep-alive, peer-idle and linger. Deadlines are derived from connection
//! state each time they are asked for, so no timer can go stale.

use std::time::{Duration, Instant};

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
    /// Keep-alive: something must reach the peer at least this often so it
    /// does not declare us dead.
    KeepAlive,
    /// The peer has been silent for the configured idle timeout: it is dead.
    Idle,
    /// Close gave up waiting for the peer to acknowledge the last data.
    Linger,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` fires them.
    pub const ALL: [Timer; 6] = [
        Timer::Idle,
        Timer::Linger,
        Timer::Exp,
        Timer::Nak,
        Timer::Ack,
        Timer::KeepAlive,
    ];
}

/// The longest silence before a keep-alive (UDT4 sends one on every EXP
/// expiry, about every 0.3 s; once a second keeps idle connections cheap
/// and is still far below any peer's dead-peer detection).
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest periodic NAK interval.
const MIN_NAK_INTERVAL: Duration = Duration::from_millis(20);

impl Connection {
    /// When `timer` is next due, or `None` when it is not armed.
    pub fn timer_deadline(&self, timer: Timer) -> Option<Instant> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        match timer {
            Timer::Ack => self.ack_deadline(),
            Timer::Nak => {
                if self.receiver.loss.is_empty() {
                    None
                } else {
                    Some(self.receiver.last_nak_time + self.nak_interval())
                }
            }
            Timer::Exp => {
                if self.sender.unacked() == 0 {
                    None
                } else {
                    Some(self.exp_base + self.exp_interval())
                }
            }
            Timer::KeepAlive => Some(self.last_send_time + self.keepalive_interval()),
            Timer::Idle => Some(self.last_heard + self.config.peer_idle_timeout),
            Timer::Linger => match self.state {
                State::Closing { deadline } => deadline,
                _ => None,
            },
        }
    }

    fn ack_deadline(&self) -> Option<Instant> {
        let r = &self.receiver;
        if r.ack_now {
            return Some(r.last_ack_time.min(self.last_now));
        }
        if !r.has_unconfirmed() {
            return None;
        }
        let period = self
            .cc
            .ack_period()
            .unwrap_or(SYN_INTERVAL)
            .min(SYN_INTERVAL);
        if r.ack_number() == r.last_ack {
            // Sent already and not confirmed: UDT4 repeats a full ACK after
            // RTT + 4·RTTVar (udt4-protocol.md §6.4).
            Some(r.last_ack_time + (self.rtt.rtt() + 4 * self.rtt.rtt_var()).max(period))
        } else {
            Some(r.last_ack_time + period)
        }
    }

    /// UDT4's NAK interval formula (computed but unused in 4.11):
    /// RTT + 4·RTTVar plus the time to receive the lost packets at the
    /// current arrival rate.
    fn nak_interval(&self) -> Duration {
        let base = self.rtt.rtt() + 4 * self.rtt.rtt_var();
        let speed = self.receiver.arrivals.recv_speed();
        let drain = if speed > 0 {
            Duration::from_micros(
                u64::from(self.receiver.loss.len()) * 1_000_000 / u64::from(speed),
            )
        } else {
            Duration::ZERO
        };
        (base + drain.min(Duration::from_secs(1))).max(MIN_NAK_INTERVAL)
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
            Timer::KeepAlive => self.queue_keepalive(now),
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
                log::info!(
                    "{} linger expired with {} packets unacknowledged",
                    self.local_id,
                    self.sender.unacked()
                );
                self.queue_shutdown();
                self.enter_closed(now, crate::error::ConnectionError::LingerExpired);
            }
        }
    }
}
