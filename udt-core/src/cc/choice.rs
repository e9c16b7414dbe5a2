//! The built-in controllers by name, for configuration files and command
//! lines (`--cc bbr`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::{BbrCcFactory, BbrProfile, CongestionControlFactory, NativeCcFactory};

/// A built-in congestion controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CcAlgorithm {
    /// The native UDT4 DAIMD controller ([`NativeCc`](super::NativeCc)):
    /// every loss is a congestion signal.
    Udt,
    /// The model-based controller, fair profile ([`BbrProfile::Fair`]):
    /// backs off when more than about 2 % of a round trip's packets are lost.
    Bbr,
    /// The model-based controller, bulk profile ([`BbrProfile::Bulk`]): for
    /// dedicated or lossy links; tolerates random loss up to about 15 % per
    /// round trip.
    BbrBulk,
}

impl CcAlgorithm {
    /// The controller [`Config::default`](crate::Config) uses: the
    /// model-based one with the fair profile. Why, with the measurements:
    /// docs/congestion-control.md.
    pub const DEFAULT: CcAlgorithm = CcAlgorithm::Bbr;

    /// Every built-in controller, in the order `--help` lists them.
    pub const ALL: [CcAlgorithm; 3] = [CcAlgorithm::Bbr, CcAlgorithm::BbrBulk, CcAlgorithm::Udt];

    /// The name [`FromStr`] accepts and [`Display`](fmt::Display) prints.
    pub const fn name(self) -> &'static str {
        match self {
            CcAlgorithm::Udt => "udt",
            CcAlgorithm::Bbr => "bbr",
            CcAlgorithm::BbrBulk => "bbr-bulk",
        }
    }

    /// A factory building this controller for each connection, for
    /// [`Config::congestion`](crate::Config::congestion).
    pub fn factory(self) -> Arc<dyn CongestionControlFactory> {
        match self {
            CcAlgorithm::Udt => Arc::new(NativeCcFactory),
            CcAlgorithm::Bbr => Arc::new(BbrCcFactory::new(BbrProfile::Fair)),
            CcAlgorithm::BbrBulk => Arc::new(BbrCcFactory::new(BbrProfile::Bulk)),
        }
    }
}

impl fmt::Display for CcAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a built-in controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCcAlgorithmError(String);

impl fmt::Display for ParseCcAlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown congestion control {:?} (expected bbr, bbr-bulk or udt)",
            self.0
        )
    }
}

impl std::error::Error for ParseCcAlgorithmError {}

impl FromStr for CcAlgorithm {
    type Err = ParseCcAlgorithmError;

    /// Parses `udt` (also `native`), `bbr` (also `bbr-fair`) or `bbr-bulk`,
    /// ignoring ASCII case.
    ///
    /// # Errors
    /// [`ParseCcAlgorithmError`] for any other name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udt" | "native" => Ok(CcAlgorithm::Udt),
            "bbr" | "bbr-fair" => Ok(CcAlgorithm::Bbr),
            "bbr-bulk" => Ok(CcAlgorithm::BbrBulk),
            _ => Err(ParseCcAlgorithmError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_build_their_controller() {
        for alg in CcAlgorithm::ALL {
            assert_eq!(alg.name().parse::<CcAlgorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        assert_eq!(" BBR ".parse::<CcAlgorithm>(), Ok(CcAlgorithm::Bbr));
        assert_eq!("native".parse::<CcAlgorithm>(), Ok(CcAlgorithm::Udt));
        let err = "cubic".parse::<CcAlgorithm>().unwrap_err();
        assert!(err.to_string().contains("cubic"), "{err}");
        assert_eq!(CcAlgorithm::Udt.factory().build().name(), "udt");
        assert_eq!(CcAlgorithm::Bbr.factory().build().name(), "bbr");
        assert_eq!(CcAlgorithm::BbrBulk.factory().build().name(), "bbr-bulk");
    }
}
