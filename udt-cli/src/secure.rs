//! Secure mode in the `udt` program (issue 11): the `--code`, `--key` and
//! `--insecure` options, the codes the listening side prints, and the
//! word list they are made of.
//!
//! `udt send` and `udt recv` are encrypted and authenticated by default:
//! the side that waits for the connection prints a code such as
//! `7-amber-falcon-river`, and the side that connects must give it. `udt
//! listen` and `udt connect` stay plain UDT4 unless given `--code` or
//! `--key`. The construction is in docs/security.md.

use std::fs::File;
use std::io::Read;

use udt_mux::Security;

use crate::net::Transport;
use crate::ui::CliError;

/// The secure-mode options of `udt send` and `udt recv` (secure by
/// default).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransferSecurityArgs {
    /// The code the other side printed (or one you agree on): the transfer
    /// is encrypted and both sides prove they know it. The listening side
    /// prints a fresh one when not given.
    #[arg(long, value_name = "CODE", env = "UDT_CODE", help_heading = "Security")]
    pub code: Option<String>,
    /// A 32-byte pre-shared key, as 64 hex digits, instead of a code.
    #[arg(
        long,
        value_name = "HEX",
        env = "UDT_KEY",
        conflicts_with = "code",
        help_heading = "Security"
    )]
    pub key: Option<String>,
    /// Plain UDT4: no encryption, no authentication (to talk to older
    /// versions or other UDT4 programs). Overrides --code and --key (and
    /// UDT_CODE / UDT_KEY).
    #[arg(long, help_heading = "Security")]
    pub insecure: bool,
}

/// The secure-mode options of `udt listen` and `udt connect` (plain UDT4
/// by default, so that any UDT4 application can be the other end).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PipeSecurityArgs {
    /// Secure mode with this code (both ends give the same one).
    #[arg(long, value_name = "CODE", help_heading = "Security")]
    pub code: Option<String>,
    /// Secure mode with this 32-byte pre-shared key, as 64 hex digits.
    #[arg(
        long,
        value_name = "HEX",
        conflicts_with = "code",
        help_heading = "Security"
    )]
    pub key: Option<String>,
}

/// Whether this side waits for the connection or makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It listens: without `--code` it makes up one and prints it.
    Listens,
    /// It connects: it must be given the code.
    Connects,
}

/// The security of a transfer (`send`/`recv`) and the code to print, if
/// this side made one up.
///
/// # Errors
/// A usage error when the connecting side has no code or key, when a key
/// is not 64 hex digits, or for secure mode over TCP.
pub fn transfer_security(
    args: &TransferSecurityArgs,
    role: Role,
    transport: Transport,
) -> Result<(Security, Option<String>), CliError> {
    if args.insecure {
        eprintln!(
            "udt: WARNING: --insecure: this transfer is NOT encrypted and NOT authenticated \
             (plain UDT4): anyone on the path can read or change it"
        );
        return Ok((Security::Plain, None));
    }
    if transport == Transport::Tcp {
        return Err(CliError::usage(
            "--transport tcp has no secure mode: add --insecure to compare over plain TCP",
        ));
    }
    if let Some(key) = &args.key {
        return Ok((Security::PreSharedKey(parse_key(key)?), None));
    }
    match (&args.code, role) {
        (Some(code), _) => Ok((Security::Code(check_code(code)?), None)),
        (None, Role::Listens) => {
            let code = new_code().map_err(|e| CliError::io("making a code", e))?;
            Ok((Security::Code(code.clone()), Some(code)))
        }
        (None, Role::Connects) => Err(CliError::usage(
            "give the code the other side printed: --code CODE (or --insecure for a plain UDT4 peer)",
        )),
    }
}

/// The security of `udt listen`, `udt connect` and `udt bench`: plain
/// unless a code or key is given.
///
/// # Errors
/// A usage error for a malformed key or code, or for a code or key with
/// `--transport tcp` (which would otherwise run in clear).
pub fn pipe_security(args: &PipeSecurityArgs, transport: Transport) -> Result<Security, CliError> {
    if transport == Transport::Tcp && (args.key.is_some() || args.code.is_some()) {
        return Err(CliError::usage(
            "--transport tcp has no secure mode: --code and --key need UDT",
        ));
    }
    if let Some(key) = &args.key {
        return Ok(Security::PreSharedKey(parse_key(key)?));
    }
    match &args.code {
        Some(code) => Ok(Security::Code(check_code(code)?)),
        None => Ok(Security::Plain),
    }
}

/// Tells the user the code to give the other side (stderr: stdout may
/// carry data or JSON).
pub fn announce_code(code: &str, other_side: &str) {
    eprintln!("Code: {code}");
    eprintln!("On the other side: {other_side} --code {code}");
}

/// The name of a session at a NAT-punch broker (`--broker`) for `code`.
///
/// In secure mode only the code's **nameplate** (what comes before the
/// first `-`: the number of `7-amber-falcon-river`) names the session,
/// and the whole code is the PAKE password, as in magic-wormhole: the
/// broker, which sees the session name and sits on the path of a relayed
/// transfer, learns nothing it could test codes against offline (a hash
/// of a short code could be brute-forced), and as a man in the middle it
/// gets one online guess of the rest (three words, 24 bits), which fails
/// loudly on both sides. With `--insecure` the whole code names the
/// session (the transfer is plain anyway).
///
/// # Errors
/// A usage error for a secure code without a nameplate and a secret part.
pub fn broker_session(code: &str, insecure: bool) -> Result<String, CliError> {
    let code = check_code(code)?;
    if insecure {
        return Ok(code);
    }
    match code.split_once('-') {
        Some((nameplate, rest)) if !nameplate.is_empty() && !rest.is_empty() => {
            Ok(nameplate.to_string())
        }
        _ => Err(CliError::usage(
            "a code for --broker must be NAMEPLATE-SECRET, e.g. 7-amber-falcon-river: the broker \
             sees only the part before the first '-', the rest stays secret",
        )),
    }
}

/// A key of 64 hex digits.
///
/// # Errors
/// A usage error naming what is wrong.
pub fn parse_key(hex: &str) -> Result<[u8; 32], CliError> {
    let hex = hex.trim();
    let bad = || {
        CliError::usage("--key needs 64 hex digits (32 bytes; e.g. from `openssl rand -hex 32`)")
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(key)
}

/// A code must not be empty; anything else goes (it is compared after
/// trimming and lower-casing).
fn check_code(code: &str) -> Result<String, CliError> {
    if code.trim().is_empty() {
        return Err(CliError::usage("--code is empty"));
    }
    Ok(code.trim().to_lowercase())
}

/// A fresh code: a number from 1 to 99 and three words of [`WORDS`]
/// (about 31 bits: enough against online guessing, which the PAKE limits
/// to one guess per connection attempt).
///
/// # Errors
/// When the operating system's random source cannot be read.
pub fn new_code() -> std::io::Result<String> {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(code_from(bytes))
}

/// The code for four random bytes.
pub fn code_from(bytes: [u8; 4]) -> String {
    let n = u32::from(bytes[0]) % 99 + 1;
    let w = |b: u8| WORDS[usize::from(b)];
    format!("{n}-{}-{}-{}", w(bytes[1]), w(bytes[2]), w(bytes[3]))
}

/// 256 short, distinct, easily spoken English words.
pub const WORDS: [&str; 256] = [
    "acorn",
    "actor",
    "adobe",
    "agent",
    "alarm",
    "album",
    "alder",
    "alley",
    "amber",
    "anchor",
    "angle",
    "ankle",
    "apple",
    "apron",
    "arena",
    "arrow",
    "aspen",
    "atlas",
    "attic",
    "autumn",
    "badge",
    "bagel",
    "baker",
    "bamboo",
    "banjo",
    "barley",
    "basin",
    "beach",
    "beacon",
    "bean",
    "beaver",
    "bell",
    "bench",
    "berry",
    "bison",
    "blade",
    "blossom",
    "boat",
    "bonnet",
    "border",
    "bottle",
    "boulder",
    "branch",
    "breeze",
    "brick",
    "bridge",
    "brook",
    "bucket",
    "butter",
    "cabin",
    "cable",
    "cactus",
    "camel",
    "camera",
    "canal",
    "candle",
    "canoe",
    "canyon",
    "carbon",
    "cargo",
    "carpet",
    "castle",
    "cedar",
    "cello",
    "chalk",
    "cherry",
    "chess",
    "cider",
    "circle",
    "citrus",
    "clover",
    "cobalt",
    "cocoa",
    "comet",
    "copper",
    "coral",
    "cotton",
    "cradle",
    "crane",
    "crater",
    "cricket",
    "crystal",
    "cobble",
    "daisy",
    "dawn",
    "delta",
    "denim",
    "desert",
    "diamond",
    "dingo",
    "dolphin",
    "domino",
    "dragon",
    "drum",
    "dune",
    "eagle",
    "easel",
    "echo",
    "ember",
    "engine",
    "falcon",
    "feather",
    "fern",
    "ferry",
    "fiddle",
    "field",
    "flame",
    "flint",
    "forest",
    "fossil",
    "fountain",
    "fox",
    "frost",
    "galaxy",
    "garden",
    "garnet",
    "gecko",
    "geyser",
    "ginger",
    "glacier",
    "globe",
    "gopher",
    "granite",
    "grape",
    "gravel",
    "guitar",
    "hammer",
    "harbor",
    "harp",
    "hazel",
    "hedge",
    "heron",
    "hickory",
    "honey",
    "horizon",
    "husky",
    "igloo",
    "indigo",
    "iris",
    "island",
    "ivory",
    "jacket",
    "jaguar",
    "jasmine",
    "jelly",
    "jigsaw",
    "juniper",
    "kayak",
    "kettle",
    "kite",
    "koala",
    "ladder",
    "lagoon",
    "lantern",
    "lark",
    "lava",
    "lemon",
    "lilac",
    "linen",
    "lizard",
    "llama",
    "lotus",
    "lumber",
    "magnet",
    "mango",
    "maple",
    "marble",
    "meadow",
    "melon",
    "meteor",
    "mint",
    "mirror",
    "mitten",
    "monsoon",
    "mosaic",
    "moss",
    "mountain",
    "mural",
    "nectar",
    "needle",
    "nickel",
    "nutmeg",
    "oasis",
    "ocean",
    "olive",
    "onyx",
    "opal",
    "orbit",
    "orchard",
    "otter",
    "oyster",
    "paddle",
    "palm",
    "panda",
    "paper",
    "parrot",
    "pebble",
    "pepper",
    "piano",
    "pillow",
    "pine",
    "planet",
    "plum",
    "pocket",
    "polar",
    "pony",
    "poppy",
    "prairie",
    "prism",
    "puffin",
    "quail",
    "quartz",
    "quill",
    "rabbit",
    "radar",
    "rain",
    "raven",
    "reef",
    "ribbon",
    "river",
    "robin",
    "rocket",
    "saddle",
    "saffron",
    "salmon",
    "sandal",
    "sapphire",
    "scarf",
    "shell",
    "silver",
    "sketch",
    "sparrow",
    "spruce",
    "stone",
    "sunset",
    "swan",
    "tango",
    "teapot",
    "thistle",
    "thunder",
    "tiger",
    "timber",
    "tulip",
    "tundra",
    "turtle",
    "velvet",
    "violet",
    "walnut",
    "willow",
    "zebra",
    "harvest",
    "lighthouse",
    "marigold",
    "nebula",
    "pumpkin",
    "sequoia",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_lowercase_and_codes_use_them() {
        let mut sorted = WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256, "duplicate words");
        for w in WORDS {
            assert!(w.chars().all(|c| c.is_ascii_lowercase()), "{w}");
        }
        assert_eq!(code_from([6, 8, 100, 219]), "7-amber-falcon-river");
        let code = code_from([255, 255, 0, 1]);
        assert_eq!(code, "58-sequoia-acorn-actor");
        let a = new_code().expect("urandom");
        assert_eq!(a.split('-').count(), 4);
    }

    #[test]
    fn transfer_security_defaults_and_errors() {
        let none = TransferSecurityArgs::default();
        let (s, printed) =
            transfer_security(&none, Role::Listens, Transport::Udt).expect("listener");
        let code = printed.expect("a code is made up");
        assert_eq!(s, Security::Code(code));
        let err = transfer_security(&none, Role::Connects, Transport::Udt).expect_err("no code");
        assert!(err.message.contains("--code"), "{}", err.message);
        let with = TransferSecurityArgs {
            code: Some(" 7-Amber-Falcon-River ".into()),
            ..Default::default()
        };
        let (s, printed) = transfer_security(&with, Role::Connects, Transport::Udt).expect("ok");
        assert_eq!(s, Security::Code("7-amber-falcon-river".into()));
        assert_eq!(printed, None);
        assert!(transfer_security(&with, Role::Connects, Transport::Tcp).is_err());
        let insecure = TransferSecurityArgs {
            insecure: true,
            ..Default::default()
        };
        let (s, _) = transfer_security(&insecure, Role::Connects, Transport::Tcp).expect("ok");
        assert_eq!(s, Security::Plain);
    }

    #[test]
    fn only_the_nameplate_names_a_secure_broker_session() {
        assert_eq!(
            broker_session(" 7-Amber-Falcon-River ", false).expect("secure"),
            "7"
        );
        assert_eq!(broker_session("blue-fox", false).expect("secure"), "blue");
        for bad in ["bluefox", "-amber", "7-", ""] {
            assert!(broker_session(bad, false).is_err(), "{bad:?}");
        }
        // Plain: the whole code names the session, as before.
        assert_eq!(broker_session("bluefox", true).expect("plain"), "bluefox");
        assert_eq!(
            broker_session("7-amber-falcon-river", true).expect("plain"),
            "7-amber-falcon-river"
        );
    }

    #[test]
    fn keys_are_64_hex_digits() {
        let k = parse_key(&"ab".repeat(32)).expect("key");
        assert_eq!(k, [0xAB; 32]);
        assert!(parse_key("abc").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
        assert_eq!(
            pipe_security(&PipeSecurityArgs::default(), Transport::Udt).expect("plain"),
            Security::Plain
        );
        let coded = PipeSecurityArgs {
            code: Some("1-a-b-c".into()),
            key: None,
        };
        assert_eq!(
            pipe_security(&coded, Transport::Udt).expect("code"),
            Security::Code("1-a-b-c".into())
        );
        // Not silently in clear over TCP.
        let err = pipe_security(&coded, Transport::Tcp).expect_err("tcp");
        assert!(err.message.contains("tcp"), "{}", err.message);
    }
}
