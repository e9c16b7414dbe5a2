//! The native UDT congestion controller (UDT4 `CUDTCC`). Placeholder: being written.

use super::{CcContext, CongestionControl, CongestionControlFactory};
use crate::seq::SeqNumber;

/// The native UDT DAIMD rate controller.
#[derive(Debug, Default)]
pub struct NativeCc {
    period_us: f64,
    cwnd: f64,
}

impl CongestionControl for NativeCc {
    fn name(&self) -> &'static str {
        "udt"
    }
    fn init(&mut self, _ctx: &CcContext) {
        self.period_us = 1.0;
        self.cwnd = 16.0;
    }
    fn on_ack(&mut self, _ctx: &CcContext, _ack: SeqNumber) {}
    fn on_loss(&mut self, _ctx: &CcContext, _first_lost: SeqNumber, _count: u32) {}
    fn on_timeout(&mut self, _ctx: &CcContext) {}
    fn send_period_us(&self) -> f64 {
        self.period_us
    }
    fn congestion_window(&self) -> f64 {
        self.cwnd
    }
}

/// Builds [`NativeCc`] controllers.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeCcFactory;

impl CongestionControlFactory for NativeCcFactory {
    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(NativeCc::default())
    }
}
