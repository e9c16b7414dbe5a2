//! Text forms of impairments, durations, rates and sizes, for the command
//! line and for tests that want a one-line description of a path.
//!
//! An impairment is a comma-separated list of `key=value` items, e.g.
//! `loss=1%,delay=10ms,jitter=1ms,dup=0.1%,rate=100mbit,queue=256k`:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `loss` | probability | random loss |
//! | `burst` | `RATE:LEN` | bursty loss: long-run rate and mean burst length in datagrams |
//! | `ge` | `P_GB:P_BG:LOSS_GOOD:LOSS_BAD` | a full Gilbert–Elliott channel |
//! | `delay` | duration | fixed one-way delay |
//! | `jitter` | duration | extra uniform delay in `[0, jitter]` |
//! | `dup` | probability | duplication |
//! | `rate` | rate | bottleneck rate |
//! | `queue` | size | bottleneck queue in bytes |
//!
//! Probabilities are `0.01` or `1%`; durations `250us`, `10ms`, `1.5s`;
//! rates `100mbit`, `2gbit`, `500kbit`, `64000` (bit/s); sizes `1500`, `256k`,
//! `4m` (powers of 1024). `none` or an empty string is no impairment.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::impair::{Impairment, Loss};

/// A malformed impairment, duration, rate, size or probability text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

/// Parses a duration such as `250us`, `10ms`, `1.5s` or `0`.
///
/// # Errors
/// [`SpecError`] for a missing or unknown unit, a negative or non-numeric value.
pub fn parse_duration(text: &str) -> Result<Duration, SpecError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err(format!("duration {text:?} needs a unit: ns, us, ms or s")))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| err(format!("duration {text:?}: {num:?} is not a number")))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return Err(err(format!("duration {text:?}: unknown unit {unit:?}"))),
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| err(format!("duration {text:?} is out of range")))
}

/// Parses a probability: `0.05` or `5%`, within `[0, 1]`.
///
/// # Errors
/// [`SpecError`] for a non-number or a value outside `[0, 1]`.
pub fn parse_probability(text: &str) -> Result<f64, SpecError> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| err(format!("probability {text:?} is not a number")))?;
    let p = v * scale;
    if !(0.0..=1.0).contains(&p) {
        return Err(err(format!(
            "probability {text:?} is outside 0..1 (0%..100%)"
        )));
    }
    Ok(p)
}

/// Parses a rate in bits per second: `64000`, `500kbit`, `100mbit`, `2gbit`
/// (powers of 1000, as link rates are counted).
///
/// # Errors
/// [`SpecError`] for an unknown unit, a non-number or zero.
pub fn parse_rate(text: &str) -> Result<u64, SpecError> {
    let t = text.trim().to_ascii_lowercase();
    let (num, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(suffix, scale)| t.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((t.as_str(), 1.0));
    let v: f64 = num.parse().map_err(|_| {
        err(format!(
            "rate {text:?}: use e.g. 100mbit, 500kbit or 64000 (bit/s)"
        ))
    })?;
    let bps = v * scale;
    if !(1.0..=1e15).contains(&bps) {
        return Err(err(format!(
            "rate {text:?} must be between 1 bit/s and 1 Pbit/s"
        )));
    }
    Ok(bps as u64)
}

/// Parses a size in bytes: `1500`, `256k`, `4m`, `1g` (powers of 1024).
///
/// # Errors
/// [`SpecError`] for an unknown unit or a non-number.
pub fn parse_size(text: &str) -> Result<usize, SpecError> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, scale) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v: u64 = num
        .parse()
        .map_err(|_| err(format!("size {text:?}: use e.g. 1500, 256k or 4m")))?;
    v.checked_mul(scale)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| err(format!("size {text:?} is too large")))
}

impl FromStr for Impairment {
    type Err = SpecError;

    /// Parses the `key=value,...` form described in the module documentation.
    fn from_str(text: &str) -> Result<Self, SpecError> {
        let mut imp = Impairment::default();
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("none") {
            return Ok(imp);
        }
        for item in t.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| err(format!("{item:?} is not key=value")))?;
            match key.trim() {
                "loss" => imp.loss = Loss::Random(parse_probability(value)?),
                "burst" => {
                    let (rate, len) = value
                        .split_once(':')
                        .ok_or_else(|| err(format!("burst={value:?}: use RATE:LEN, e.g. 1%:4")))?;
                    let len: f64 = len
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("burst length {len:?} is not a number")))?;
                    if !(1.0..=1e9).contains(&len) {
                        return Err(err(format!("burst length {len} must be at least 1")));
                    }
                    imp.loss = Loss::bursty(parse_probability(rate)?, len);
                }
                "ge" => {
                    let parts: Vec<&str> = value.split(':').collect();
                    let [a, b, c, d] = parts.as_slice() else {
                        return Err(err(format!(
                            "ge={value:?}: use P_GOOD_TO_BAD:P_BAD_TO_GOOD:LOSS_GOOD:LOSS_BAD"
                        )));
                    };
                    imp.loss = Loss::GilbertElliott {
                        good_to_bad: parse_probability(a)?,
                        bad_to_good: parse_probability(b)?,
                        loss_good: parse_probability(c)?,
                        loss_bad: parse_probability(d)?,
                    };
                }
                "delay" => imp.delay = parse_duration(value)?,
                "jitter" => imp.jitter = parse_duration(value)?,
                "dup" | "duplicate" => imp.duplicate = parse_probability(value)?,
                "rate" => imp.rate_bps = Some(parse_rate(value)?),
                "queue" => imp.queue_bytes = parse_size(value)?,
                other => {
                    return Err(err(format!(
                        "unknown impairment {other:?}: use loss, burst, ge, delay, jitter, dup, rate or queue"
                    )))
                }
            }
        }
        imp.validate().map_err(|e| err(e.to_string()))?;
        Ok(imp)
    }
}

impl fmt::Display for Impairment {
    /// Writes the `key=value,...` form that [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        match self.loss {
            Loss::None => {}
            Loss::Random(p) => items.push(format!("loss={p}")),
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => items.push(format!(
                "ge={good_to_bad}:{bad_to_good}:{loss_good}:{loss_bad}"
            )),
        }
        if !self.delay.is_zero() {
            items.push(format!("delay={}", DurationText(self.delay)));
        }
        if !self.jitter.is_zero() {
            items.push(format!("jitter={}", DurationText(self.jitter)));
        }
        if self.duplicate > 0.0 {
            items.push(format!("dup={}", self.duplicate));
        }
        if let Some(rate) = self.rate_bps {
            items.push(format!("rate={rate}"));
            items.push(format!("queue={}", self.queue_bytes));
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

/// A duration in the largest unit that [`parse_duration`] reads back exactly.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", ns / 1_000_000_000)
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1000) {
            write!(f, "{}us", ns / 1000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 7ns ").unwrap(), Duration::from_nanos(7));
        for bad in ["", "10", "ms", "1.2.3ms", "-5ms", "5h", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probabilities_rates_sizes() {
        assert_eq!(parse_probability("5%").unwrap(), 0.05);
        assert_eq!(parse_probability("0.25").unwrap(), 0.25);
        assert!(parse_probability("101%").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert!(parse_probability("NaN").is_err());
        assert_eq!(parse_rate("100mbit").unwrap(), 100_000_000);
        assert_eq!(parse_rate("1.5Gbit").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("64000").unwrap(), 64_000);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert_eq!(parse_size("256k").unwrap(), 256 << 10);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert!(parse_size("99999999999999999999g").is_err());
        assert!(parse_size("k").is_err());
    }

    #[test]
    fn impairment_round_trip() {
        let imp: Impairment = "loss=1%,delay=10ms,jitter=1ms,dup=0.1%,rate=100mbit,queue=256k"
            .parse()
            .unwrap();
        assert_eq!(imp.loss, Loss::Random(0.01));
        assert_eq!(imp.delay, Duration::from_millis(10));
        assert_eq!(imp.jitter, Duration::from_millis(1));
        assert_eq!(imp.duplicate, 0.001);
        assert_eq!(imp.rate_bps, Some(100_000_000));
        assert_eq!(imp.queue_bytes, 256 << 10);
        assert_eq!(
            imp.to_string(),
            "loss=0.01,delay=10ms,jitter=1ms,dup=0.001,rate=100000000,queue=262144"
        );
        let again: Impairment = imp.to_string().parse().unwrap();
        assert_eq!(again, imp);

        let ge: Impairment = "ge=0.01:0.25:0:1".parse().unwrap();
        assert_eq!(ge.to_string().parse::<Impairment>().unwrap(), ge);
        let burst: Impairment = "burst=2%:4".parse().unwrap();
        assert!((burst.loss.mean_rate() - 0.02).abs() < 1e-9);
        assert_eq!("none".parse::<Impairment>().unwrap(), Impairment::default());
        assert_eq!(Impairment::default().to_string(), "none");
    }

    #[test]
    fn impairment_errors() {
        for bad in [
            "loss",
            "loss=2",
            "speed=1",
            "burst=1%",
            "burst=1%:0.5",
            "ge=1:2",
            "rate=0",
            "delay=2h",
            "delay=7200s",
        ] {
            assert!(bad.parse::<Impairment>().is_err(), "{bad}");
        }
    }
}
