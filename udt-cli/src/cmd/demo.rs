//! `udt demo`: the whole file-transfer job on loopback with no arguments —
//! a receiver in this process, a generated file, the send with its progress
//! bar, an independent verification, and the summary.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use serde::Serialize;

use super::files::{self, TransferSummary};
use crate::net::{Conn, Listener, NetOptions};
use crate::proto::{self, exit, Limits, RecvOptions};
use crate::ui::{self, BarObserver, CliError, Output};

/// `udt demo` arguments.
#[derive(Clone, Debug)]
pub struct DemoArgs {
    /// Bytes of the generated file.
    pub size: u64,
    /// Parent of the scratch directory (default: the system temp dir).
    pub dir: Option<PathBuf>,
    /// Keep the scratch files.
    pub keep: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// The demo's result, as printed with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct DemoSummary {
    /// `"demo"`.
    pub command: &'static str,
    /// True when the copy is identical.
    pub ok: bool,
    /// Bytes of the file.
    pub size: u64,
    /// BLAKE3 of the file (hex), the same on both sides.
    pub blake3: String,
    /// The sender's summary.
    pub send: TransferSummary,
    /// The receiver's summary.
    pub recv: TransferSummary,
    /// Where the files are (with `--keep`).
    pub kept_in: Option<String>,
}

/// Runs the demo.
///
/// # Errors
/// Any failure of the transfer, or a copy that differs (exit 4).
pub fn run(args: &DemoArgs) -> Result<DemoSummary, CliError> {
    let output = args.output;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = parent.join(format!("udt-demo-{}", std::process::id()));
    let result = run_in(args, &scratch);
    if args.keep {
        output.say(format_args!("scratch files kept in {}", scratch.display()));
    } else if let Err(e) = fs::remove_dir_all(&scratch) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("udt: warning: could not remove {}: {e}", scratch.display());
        }
    }
    let mut summary = result?;
    if args.keep {
        summary.kept_in = Some(scratch.display().to_string());
    }
    output.json(&summary);
    Ok(summary)
}

fn run_in(args: &DemoArgs, scratch: &Path) -> Result<DemoSummary, CliError> {
    let output = args.output;
    let src_dir = scratch.join("send");
    let out_dir = scratch.join("received");
    fs::create_dir_all(&src_dir)
        .map_err(|e| CliError::io(&format!("creating {}", src_dir.display()), e))?;
    let file = src_dir.join("demo.bin");

    let listener = Listener::bind(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::usage("bad address"))?,
        &args.net,
    )
    .map_err(|e| CliError::io("cannot listen on loopback", e))?;
    let addr = listener.local_addr();
    output.say(format_args!(
        "udt demo: one {} file over {} on loopback ({addr}), receiver in this process",
        ui::bytes(args.size),
        args.net.transport
    ));

    let t = Instant::now();
    let source_hash = generate(&file, args.size, output)
        .map_err(|e| CliError::io(&format!("writing {}", file.display()), e))?;
    output.say(format_args!(
        "  generated {} in {:.2} s",
        file.display(),
        t.elapsed().as_secs_f64()
    ));

    let recv_net = args.net.clone();
    let recv_options = RecvOptions::new(&out_dir);
    let receiver = thread::Builder::new()
        .name("demo-receiver".into())
        .spawn(move || -> Result<TransferSummary, CliError> {
            let conn = listener
                .accept()
                .map_err(|e| CliError::io("accept failed", e))?;
            let quiet = Output::quiet();
            files::serve_one(conn, &recv_options, &recv_net, quiet)
        })
        .map_err(|e| CliError::io("cannot start the receiver", e))?;

    // The sender prints its usual human summary; the JSON one is ours.
    let send_output = Output {
        quiet: output.quiet || output.json,
        json: false,
        verbose: output.verbose,
    };
    let mut observer = BarObserver::new(send_output);
    let entries = proto::scan(
        std::slice::from_ref(&file),
        &Limits::default(),
        &mut observer,
    )?;
    let start = Instant::now();
    let mut send_net = args.net.clone();
    send_net.linger = Some(files::SENDER_LINGER);
    let conn = Conn::connect(&addr.to_string(), &send_net)
        .map_err(|e| CliError::io("cannot connect to the receiver", e))?;
    let sent = files::send_over(
        conn,
        &entries,
        &args.net,
        files::DEFAULT_IDLE,
        false,
        send_output,
        &mut observer,
        start,
    );
    let received = receiver
        .join()
        .map_err(|_| CliError::new(exit::FAILURE, "the receiver thread panicked"))?;
    let sent = sent?;
    let received = received?;

    // Independent of the protocol's own check: read the copy back.
    let copy = out_dir.join("demo.bin");
    let copy_hash =
        hash_file(&copy).map_err(|e| CliError::io(&format!("reading {}", copy.display()), e))?;
    if copy_hash != source_hash {
        return Err(CliError::new(
            exit::VERIFY,
            "the received copy differs from the original",
        ));
    }
    let hex = source_hash.to_hex().to_string();
    output.say(format_args!(
        "  verified: both copies have BLAKE3 {}…{}",
        &hex[..16],
        &hex[hex.len() - 8..]
    ));
    output.say("done: byte-exact, fsynced and renamed into place on the receiver");
    Ok(DemoSummary {
        command: "demo",
        ok: true,
        size: args.size,
        blake3: hex,
        send: sent,
        recv: received,
        kept_in: None,
    })
}

/// Writes `size` pseudo-random bytes (xorshift; incompressible enough for
/// a transport test) and returns their BLAKE3.
fn generate(path: &Path, size: u64, output: Output) -> io::Result<blake3::Hash> {
    let mut f = File::create(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ size;
    let bar = output.bar(size);
    bar.set_message("generating");
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    f.sync_all()?;
    Ok(hasher.finalize())
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut f = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_demo_runs_and_cleans_up() {
        let parent = std::env::temp_dir().join(format!("udt-demo-test-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        let s = run(&DemoArgs {
            size: 3 << 20,
            dir: Some(parent.clone()),
            keep: false,
            net: NetOptions::default(),
            output: Output::quiet(),
        })
        .unwrap();
        assert!(s.ok);
        assert_eq!(s.send.bytes_transferred, 3 << 20);
        assert_eq!(s.recv.bytes_transferred, 3 << 20);
        assert_eq!(fs::read_dir(&parent).unwrap().count(), 0, "scratch removed");
        let _ = fs::remove_dir_all(&parent);
    }
}
