//! What to open and how: [`Options`] for a connection or listener (its kind
//! and configuration) and [`MessageOptions`] for one message.

use std::marker::PhantomData;
use std::time::Duration;

use udt_core::{Config, Security};

use crate::mode::{MessageMode, Mode, StreamMode};

/// The kind and configuration of a connection to open, for
/// [`Endpoint::connect_with`](crate::Endpoint::connect_with),
/// [`rendezvous_with`](crate::Endpoint::rendezvous_with) and
/// [`listen_with`](crate::Endpoint::listen_with).
///
/// Start from [`Options::stream`] or [`Options::messages`]: the choice fixes
/// the type of what you get back ([`UdtStream`](crate::UdtStream) or
/// [`UdtMessageSocket`](crate::UdtMessageSocket)). Without
/// [`config`](Self::config) the endpoint's default configuration applies.
///
/// ```
/// use std::time::Duration;
/// use udt_mux::{Config, Endpoint, Options};
///
/// # fn main() -> std::io::Result<()> {
/// let server = Endpoint::bind("127.0.0.1:0")?;
/// let listener = server.listen_with(8, Options::messages())?;
///
/// let mut config = Config::default();
/// config.connect_timeout = Duration::from_secs(1);
/// let client = Endpoint::bind("127.0.0.1:0")?;
/// let socket = client.connect_with(server.local_addr(), Options::messages().config(config))?;
/// let (accepted, _) = listener.accept()?;
/// socket.send_msg(b"one whole message")?;
/// assert_eq!(accepted.recv_msg()?.as_deref(), Some(&b"one whole message"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Options<M: Mode = StreamMode> {
    config: Option<Config>,
    security: Option<Security>,
    mode: PhantomData<M>,
}

impl Options<StreamMode> {
    /// A byte stream ([`UdtStream`](crate::UdtStream)) with the endpoint's
    /// default configuration.
    pub fn stream() -> Options<StreamMode> {
        Options::new()
    }
}

impl Options<MessageMode> {
    /// A message connection ([`UdtMessageSocket`](crate::UdtMessageSocket))
    /// with the endpoint's default configuration.
    pub fn messages() -> Options<MessageMode> {
        Options::new()
    }
}

impl Default for Options<StreamMode> {
    fn default() -> Self {
        Options::stream()
    }
}

impl<M: Mode> Options<M> {
    fn new() -> Options<M> {
        Options {
            config: None,
            security: None,
            mode: PhantomData,
        }
    }

    /// Uses `config` for this connection (or, for a listener, for the
    /// connections it accepts) instead of the endpoint's default. It is
    /// checked when the connection is opened.
    pub fn config(mut self, config: Config) -> Options<M> {
        self.config = Some(config);
        self
    }

    /// Secure mode for this connection (or, for a listener, the
    /// connections it accepts), whatever the configuration says: a
    /// pre-shared key, static keys with the peer keys allowed, or a code
    /// ([`Security`], docs/security.md). A secure caller refuses a plain
    /// listener and the other way round; the accepted or connected socket
    /// reports who the peer proved to be
    /// ([`UdtSocket::peer_identity`](crate::UdtSocket::peer_identity)).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use udt_mux::{Endpoint, Options, PeerIdentity, Security};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let code = Security::Code("7-amber-falcon-river".into());
    /// let server = Endpoint::bind("127.0.0.1:0")?;
    /// let listener = server.listen_with(4, Options::stream().security(code.clone()))?;
    /// let client = Endpoint::bind("127.0.0.1:0")?;
    /// let mut stream = client.connect_with(server.local_addr(), Options::stream().security(code))?;
    /// let (mut peer, _) = listener.accept()?;
    /// assert_eq!(peer.peer_identity(), Some(PeerIdentity::Code));
    /// stream.write_all(b"sealed")?;
    /// let mut buf = [0u8; 6];
    /// peer.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"sealed");
    /// # Ok(())
    /// # }
    /// ```
    pub fn security(mut self, security: Security) -> Options<M> {
        self.security = Some(security);
        self
    }

    /// The configuration to use: the one given, else `default`, with the
    /// security given to [`security`](Self::security).
    pub(crate) fn config_or(self, default: &Config) -> Config {
        let mut config = self.config.unwrap_or_else(|| default.clone());
        if let Some(security) = self.security {
            config.security = security;
        }
        config
    }
}

/// How to send one message: its time-to-live and whether it must wait for
/// the messages sent before it. The default (what
/// [`send_msg`](crate::UdtMessageSocket::send_msg) uses) is no time-to-live
/// and in order.
///
/// ```
/// use std::time::Duration;
/// use udt_mux::MessageOptions;
///
/// let options = MessageOptions::new().ttl(Duration::from_millis(100)).unordered();
/// assert_eq!(options.time_to_live(), Some(Duration::from_millis(100)));
/// assert!(!options.is_ordered());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageOptions {
    ttl: Option<Duration>,
    ordered: bool,
}

impl Default for MessageOptions {
    fn default() -> Self {
        MessageOptions::new()
    }
}

impl MessageOptions {
    /// No time-to-live, in order: the message is delivered reliably and
    /// only after every earlier in-order message. (UDT4's `sendmsg`
    /// defaults to out of order; here order is the default because it is
    /// the least surprising.)
    pub const fn new() -> MessageOptions {
        MessageOptions {
            ttl: None,
            ordered: true,
        }
    }

    /// Gives the message up if it still needs a retransmission `ttl` after
    /// it was sent: the sender tells the receiver, which then never
    /// delivers it (partial reliability).
    pub const fn ttl(mut self, ttl: Duration) -> MessageOptions {
        self.ttl = Some(ttl);
        self
    }

    /// Lets the receiver deliver the message as soon as it is complete,
    /// ahead of earlier ones still missing packets.
    pub const fn unordered(mut self) -> MessageOptions {
        self.ordered = false;
        self
    }

    /// Sets whether the message waits for earlier in-order messages.
    pub const fn ordered(mut self, ordered: bool) -> MessageOptions {
        self.ordered = ordered;
        self
    }

    /// The time-to-live, if any.
    pub const fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// True when the message is delivered in order.
    pub const fn is_ordered(&self) -> bool {
        self.ordered
    }
}
