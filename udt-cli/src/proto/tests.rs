//! End-to-end tests of the protocol over in-memory pipes (and one over TCP
//! loopback), independent of UDT: trees, metadata, resume, tampering,
//! conflicts and a hostile sender speaking raw frames.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::{self, EntryKind, EntryMeta, Frame, FrameReader};
use super::*;

/// A bounded in-memory byte pipe; dropping either end closes it.
#[derive(Default)]
struct PipeState {
    data: VecDeque<u8>,
    reader_gone: bool,
    writer_gone: bool,
}

struct Pipe {
    state: Mutex<PipeState>,
    cond: Condvar,
}

const PIPE_CAPACITY: usize = 64 * 1024;

struct PipeReader(Arc<Pipe>);
struct PipeWriter(Arc<Pipe>);

fn pipe() -> (PipeWriter, PipeReader) {
    let p = Arc::new(Pipe {
        state: Mutex::new(PipeState::default()),
        cond: Condvar::new(),
    });
    (PipeWriter(p.clone()), PipeReader(p))
}

impl wire::ReadAppend for PipeReader {}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.state.lock().unwrap();
        loop {
            if !s.data.is_empty() {
                let n = buf.len().min(s.data.len());
                for (dst, src) in buf.iter_mut().zip(s.data.drain(..n)) {
                    *dst = src;
                }
                self.0.cond.notify_all();
                return Ok(n);
            }
            if s.writer_gone {
                return Ok(0);
            }
            s = self.0.cond.wait(s).unwrap();
        }
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().reader_gone = true;
        self.0.cond.notify_all();
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.state.lock().unwrap();
        loop {
            if s.reader_gone {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"));
            }
            let room = PIPE_CAPACITY.saturating_sub(s.data.len());
            if room > 0 {
                let n = room.min(buf.len());
                s.data.extend(&buf[..n]);
                self.0.cond.notify_all();
                return Ok(n);
            }
            s = self.0.cond.wait(s).unwrap();
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().writer_gone = true;
        self.0.cond.notify_all();
    }
}

/// A fresh scratch directory under the target dir's tmp.
fn scratch(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("udt-cli-proto-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    base
}

fn opts(out: &Path) -> RecvOptions {
    let mut o = RecvOptions::new(out);
    o.fsync = false;
    o
}

/// Runs sender and receiver on two threads over pipes.
fn transfer(
    roots: &[PathBuf],
    recv: RecvOptions,
) -> (
    Result<SendReport, TransferError>,
    Result<RecvReport, TransferError>,
) {
    let (to_recv_w, to_recv_r) = pipe();
    let (to_send_w, to_send_r) = pipe();
    let receiver = thread::spawn(move || {
        let mut w = to_send_w;
        let r = receive(to_recv_r, &mut w, &recv, &mut Quiet);
        drop(w);
        r
    });
    let entries = scan(roots, &Limits::default(), &mut Quiet);
    let sent = entries.and_then(|entries| {
        let mut w = to_recv_w;
        send_files(to_send_r, &mut w, &entries, &mut Quiet)
    });
    (sent, receiver.join().unwrap())
}

/// As [`transfer`], the sender run with `--resume`.
fn transfer_asking_resume(
    roots: &[PathBuf],
    recv: RecvOptions,
) -> (
    Result<SendReport, TransferError>,
    Result<RecvReport, TransferError>,
) {
    let (to_recv_w, to_recv_r) = pipe();
    let (to_send_w, to_send_r) = pipe();
    let receiver = thread::spawn(move || {
        let mut w = to_send_w;
        let r = receive(to_recv_r, &mut w, &recv, &mut Quiet);
        drop(w);
        r
    });
    let entries = scan(roots, &Limits::default(), &mut Quiet);
    let sent = entries.and_then(|entries| {
        let mut w = to_recv_w;
        send_files_resuming(to_send_r, &mut w, &entries, true, &mut Quiet)
    });
    (sent, receiver.join().unwrap())
}

/// Deterministic pseudo-random contents.
fn contents(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = udt_core::rng::Rng::new(seed);
    (0..len).map(|_| rng.next_u32() as u8).collect()
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn mtime(p: &Path) -> SystemTime {
    fs::symlink_metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A tree with an empty file, an empty directory, spaces, non-ASCII names,
/// odd sizes, odd modes and old mtimes.
fn make_tree(root: &Path) -> PathBuf {
    let top = root.join("tree top");
    fs::create_dir_all(top.join("empty dir")).unwrap();
    fs::create_dir_all(top.join("sub/déjà vu ✓")).unwrap();
    fs::write(top.join("empty file"), b"").unwrap();
    fs::write(
        top.join("sub/déjà vu ✓/naïve 文件.bin"),
        contents(3 * 1024 * 1024 + 17, 1),
    )
    .unwrap();
    fs::write(top.join("sub/small"), b"hello\n").unwrap();
    let old = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    set_mtime(&top.join("sub/small"), old);
    #[cfg(unix)]
    {
        set_mode(&top.join("sub/small"), 0o640);
        set_mode(&top.join("empty file"), 0o600);
        set_mode(&top.join("sub/déjà vu ✓"), 0o750);
        set_mode(&top.join("sub/déjà vu ✓/naïve 文件.bin"), 0o755);
    }
    top
}

/// Compares two trees: names, kinds, contents, modes and mtimes.
fn assert_same_tree(a: &Path, b: &Path) {
    let ma = fs::symlink_metadata(a).unwrap();
    let mb = fs::symlink_metadata(b).unwrap();
    assert_eq!(ma.is_dir(), mb.is_dir(), "{}", b.display());
    #[cfg(unix)]
    assert_eq!(mode(a), mode(b), "mode of {}", b.display());
    assert_eq!(mtime(a), mtime(b), "mtime of {}", b.display());
    if ma.is_dir() {
        let mut names_a: Vec<_> = fs::read_dir(a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names_b: Vec<_> = fs::read_dir(b)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names_a.sort();
        names_b.sort();
        assert_eq!(names_a, names_b, "entries of {}", b.display());
        for n in names_a {
            assert_same_tree(&a.join(&n), &b.join(&n));
        }
    } else {
        assert!(
            fs::read(a).unwrap() == fs::read(b).unwrap(),
            "contents of {}",
            b.display()
        );
    }
}

/// Every file under `dir`, for "nothing written outside" checks.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn tree_is_copied_exactly() {
    let base = scratch("tree");
    let top = make_tree(&base.join("src"));
    let out = base.join("out");
    let (s, r) = transfer(std::slice::from_ref(&top), opts(&out));
    let s = s.unwrap();
    let r = r.unwrap();
    assert_eq!(s.files, 3);
    assert_eq!(s.dirs, 4);
    assert_eq!(r.files, 3);
    assert_eq!(r.bytes_written, s.total_bytes);
    assert_eq!(s.bytes_sent, s.total_bytes);
    assert_same_tree(&top, &out.join("tree top"));
    // No temporary file is left behind.
    assert!(!listing(&out)
        .iter()
        .any(|p| p.to_string_lossy().contains(names::PARTIAL_SUFFIX)));
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn several_roots_and_a_single_file() {
    let base = scratch("roots");
    let a = base.join("a.txt");
    fs::write(&a, b"aaa").unwrap();
    let top = make_tree(&base.join("src"));
    let out = base.join("out");
    let (s, r) = transfer(&[a.clone(), top.clone()], opts(&out));
    s.unwrap();
    r.unwrap();
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"aaa");
    assert_same_tree(&top, &out.join("tree top"));
    // Two roots with one name are refused before anything is sent.
    let other = base.join("x");
    fs::create_dir_all(other.join("a.txt")).unwrap();
    let (s, _) = transfer(&[a, other.join("a.txt")], opts(&base.join("out2")));
    assert!(matches!(s, Err(TransferError::Usage(_))), "{s:?}");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn existing_file_is_not_clobbered_without_overwrite() {
    let base = scratch("exists");
    let src = base.join("f");
    fs::write(&src, b"new").unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("f"), b"old").unwrap();
    let (s, r) = transfer(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    let s = s.unwrap_err();
    assert_eq!(s.exit_code(), exit::EXISTS, "{s}");
    assert_eq!(fs::read(out.join("f")).unwrap(), b"old");
    // With --overwrite it is replaced.
    let mut o = opts(&out);
    o.overwrite = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    s.unwrap();
    r.unwrap();
    assert_eq!(fs::read(out.join("f")).unwrap(), b"new");
    let _ = fs::remove_dir_all(&base);
}

#[cfg(unix)]
#[test]
fn overwrite_replaces_a_symlink_without_following_it() {
    let base = scratch("symlink-overwrite");
    let victim = base.join("victim");
    fs::write(&victim, b"precious").unwrap();
    let src = base.join("f");
    fs::write(&src, b"new").unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("f")).unwrap();
    // Without --overwrite: a conflict.
    let (_, r) = transfer(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    let mut o = opts(&out);
    o.overwrite = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    s.unwrap();
    r.unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(out.join("f")).unwrap().is_file());
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn resume_continues_a_verified_partial() {
    let base = scratch("resume");
    let data = contents(2_000_000, 7);
    let src = base.join("big.bin");
    fs::write(&src, &data).unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join(".big.bin.udt-partial"), &data[..1_234_567]).unwrap();
    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    let s = s.unwrap();
    let r = r.unwrap();
    assert_eq!(s.bytes_resumed, 1_234_567);
    assert_eq!(s.bytes_sent, 2_000_000 - 1_234_567);
    assert_eq!(r.bytes_resumed, 1_234_567);
    assert_eq!(s.restarted, 0);
    assert!(fs::read(out.join("big.bin")).unwrap() == data);
    assert!(!out.join(".big.bin.udt-partial").exists());
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn tampered_partial_is_detected_and_sent_again() {
    let base = scratch("tamper");
    let data = contents(1_000_000, 8);
    let src = base.join("f.bin");
    fs::write(&src, &data).unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut partial = data[..600_000].to_vec();
    partial[300_000] ^= 0x40;
    fs::write(out.join(".f.bin.udt-partial"), &partial).unwrap();
    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    let s = s.unwrap();
    r.unwrap();
    assert_eq!(s.restarted, 1);
    assert_eq!(s.bytes_resumed, 0);
    assert_eq!(s.bytes_sent, 1_000_000);
    assert!(fs::read(out.join("f.bin")).unwrap() == data);
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn resume_keeps_identical_complete_files_and_refuses_different_ones() {
    let base = scratch("resume-complete");
    let src = make_tree(&base.join("src"));
    let out = base.join("out");
    let (s, r) = transfer(std::slice::from_ref(&src), opts(&out));
    s.unwrap();
    r.unwrap();
    // Again with --resume: nothing moves.
    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o.clone());
    let s = s.unwrap();
    let r = r.unwrap();
    assert_eq!(s.bytes_sent, 0);
    assert_eq!(r.files_unchanged, 3);
    assert_eq!(r.bytes_written, 0);
    // A different complete file is a conflict, even with --resume.
    let victim = out.join("tree top/sub/small");
    fs::write(&victim, b"HELLO\n").unwrap();
    let (s, r) = transfer(std::slice::from_ref(&src), o.clone());
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    assert_eq!(s.unwrap_err().exit_code(), exit::EXISTS);
    assert_eq!(fs::read(&victim).unwrap(), b"HELLO\n");
    // ... unless --overwrite.
    o.overwrite = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    s.unwrap();
    r.unwrap();
    assert_same_tree(&src, &out.join("tree top"));
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn a_failure_on_the_receiver_reaches_the_sender_mid_transfer() {
    let base = scratch("midway");
    let src = base.join("d");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), contents(500_000, 1)).unwrap();
    fs::write(src.join("b"), contents(500_000, 2)).unwrap();
    let out = base.join("out");
    // The temporary name of "b" is taken by a directory: creating it fails
    // after "a" went through.
    fs::create_dir_all(out.join("d/.b.udt-partial/x")).unwrap();
    // Adding to the existing directory "d" needs --resume (issue 10).
    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    let r = r.unwrap_err();
    assert!(matches!(r, TransferError::Local { .. }), "{r:?}");
    let s = s.unwrap_err();
    assert_eq!(s.exit_code(), exit::LOCAL_IO, "{s}");
    assert!(s.to_string().contains(".b.udt-partial"), "{s}");
    assert!(
        out.join("d/a").exists(),
        "the first file is complete and in place"
    );
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn transfer_over_tcp_loopback() {
    let base = scratch("tcp");
    let top = make_tree(&base.join("src"));
    let out = base.join("out");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recv_opts = opts(&out);
    let receiver = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        receive(stream, &mut w, &recv_opts, &mut Quiet)
    });
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let entries = scan(std::slice::from_ref(&top), &Limits::default(), &mut Quiet).unwrap();
    let mut w = stream.try_clone().unwrap();
    send_files(stream, &mut w, &entries, &mut Quiet).unwrap();
    receiver.join().unwrap().unwrap();
    assert_same_tree(&top, &out.join("tree top"));
    let _ = fs::remove_dir_all(&base);
}

#[cfg(unix)]
#[test]
fn symlinks_and_special_files_are_not_sent() {
    let base = scratch("skip");
    let src = base.join("d");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("real"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    struct Notes(Vec<String>);
    impl Observer for Notes {
        fn on_note(&mut self, m: &str) {
            self.0.push(m.to_owned());
        }
    }
    let mut notes = Notes(Vec::new());
    let entries = scan(std::slice::from_ref(&src), &Limits::default(), &mut notes).unwrap();
    let names: Vec<String> = entries.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(names, ["d", "d/real"]);
    assert_eq!(notes.0.len(), 1, "{:?}", notes.0);
    let _ = fs::remove_dir_all(&base);
}

// ---------------------------------------------------------------------------
// A hostile sender speaking raw frames.

fn meta(kind: EntryKind, size: u64) -> EntryMeta {
    EntryMeta {
        kind,
        mode: 0o6777,
        mtime_secs: 0,
        mtime_nanos: 0,
        size,
    }
}

/// Sends `frames` (already encoded) to a receiver into `out` and returns
/// its result and every frame it answered with.
fn hostile(
    out: &Path,
    bytes: Vec<u8>,
    o: Option<RecvOptions>,
) -> (Result<RecvReport, TransferError>, Vec<String>) {
    let (mut to_recv_w, to_recv_r) = pipe();
    let (to_send_w, to_send_r) = pipe();
    let o = o.unwrap_or_else(|| opts(out));
    let receiver = thread::spawn(move || {
        let mut w = to_send_w;
        receive(to_recv_r, &mut w, &o, &mut Quiet)
    });
    // The receiver may stop reading early: ignore write errors.
    let writer = thread::spawn(move || {
        let _ = to_recv_w.write_all(&bytes);
    });
    let result = receiver.join().unwrap();
    let mut replies = Vec::new();
    let mut frames = FrameReader::new(to_send_r);
    while let Ok(f) = frames.next_frame() {
        replies.push(format!("{f:?}"));
    }
    drop(frames);
    writer.join().unwrap();
    (result, replies)
}

fn hello(entries: u64, total: u64, out: &mut Vec<u8>) {
    wire::encode(
        &Frame::Hello {
            version: wire::VERSION,
            entries,
            total_bytes: total,
        },
        out,
    );
}

fn entry(kind: EntryKind, size: u64, path: &[u8], out: &mut Vec<u8>) {
    wire::encode(
        &Frame::Entry {
            meta: meta(kind, size),
            path,
        },
        out,
    );
}

/// One file entry with a hostile name, its contents and the right hash.
fn single_file(path: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    hello(1, 4, &mut b);
    entry(EntryKind::File, 4, path, &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 0,
        },
        &mut b,
    );
    wire::encode(&Frame::Data(b"evil"), &mut b);
    wire::encode(
        &Frame::FileEnd {
            hash: *blake3::hash(b"evil").as_bytes(),
        },
        &mut b,
    );
    wire::encode(&Frame::Done, &mut b);
    b
}

#[test]
fn hostile_names_are_refused_and_nothing_escapes() {
    let base = scratch("hostile");
    let out = base.join("a/b/out");
    fs::create_dir_all(&out).unwrap();
    let abs = format!("{}/abs-evil", base.display());
    let cases: Vec<&[u8]> = vec![
        b"../evil",
        b"../../evil",
        b"x/../../evil",
        b"/tmp/udt-evil-absolute",
        abs.as_bytes(),
        b"./evil",
        b"",
        b"a//b",
        b"a\0b",
        b"evil.udt-partial",
        b"..",
        b"nodir/evil", // parent not listed
    ];
    for name in cases {
        let (r, replies) = hostile(&out, single_file(name), None);
        let e = r.unwrap_err();
        assert!(matches!(e, TransferError::Refused(_)), "{name:?}: {e:?}");
        assert_eq!(e.exit_code(), exit::PROTOCOL);
        assert!(
            replies.len() == 1 && replies[0].starts_with("Error"),
            "{name:?}: {replies:?}"
        );
    }
    let long = vec![b'x'; 300];
    let (r, _) = hostile(&out, single_file(&long), None);
    assert!(matches!(r, Err(TransferError::Refused(_))));
    // Nothing was written anywhere under the scratch directory.
    assert_eq!(
        listing(&base),
        [base.join("a"), base.join("a/b"), base.join("a/b/out")]
    );
    assert!(!Path::new("/tmp/udt-evil-absolute").exists());
    let _ = fs::remove_dir_all(&base);
}

#[cfg(unix)]
#[test]
fn a_symlink_inside_out_cannot_lead_outside() {
    let base = scratch("hostile-symlink");
    let outside = base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("d")).unwrap();
    let mut b = Vec::new();
    hello(2, 4, &mut b);
    entry(EntryKind::Dir, 0, b"d", &mut b);
    entry(EntryKind::File, 4, b"d/evil", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    // Even with --overwrite and --resume.
    let mut b = Vec::new();
    hello(2, 4, &mut b);
    entry(EntryKind::Dir, 0, b"d", &mut b);
    entry(EntryKind::File, 4, b"d/evil", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    let mut o = opts(&out);
    o.overwrite = true;
    o.resume = true;
    let (r, _) = hostile(&out, b, Some(o));
    assert!(r.is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn hostile_lists_are_refused() {
    let base = scratch("hostile-lists");
    let out = base.join("out");
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let mut o = opts(&out);
    o.limits = limits;

    // Too many entries announced.
    let mut b = Vec::new();
    hello(11, 0, &mut b);
    let (r, _) = hostile(&out, b, Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");

    // More entries than announced.
    let mut b = Vec::new();
    hello(1, 0, &mut b);
    entry(EntryKind::Dir, 0, b"a", &mut b);
    entry(EntryKind::Dir, 0, b"b", &mut b);
    let (r, _) = hostile(&out, b, Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");

    // Duplicates, and a file used as a directory.
    for (first, second) in [(EntryKind::Dir, &b"a"[..]), (EntryKind::File, &b"a/b"[..])] {
        let mut b = Vec::new();
        hello(2, 0, &mut b);
        entry(EntryKind::File, 0, b"a", &mut b);
        entry(first, 0, second, &mut b);
        wire::encode(&Frame::ListEnd, &mut b);
        let (r, _) = hostile(&out, b, Some(o.clone()));
        assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");
    }

    // Sizes that do not add up to the announced total.
    let mut b = Vec::new();
    hello(1, 5, &mut b);
    entry(EntryKind::File, 4, b"a", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    let (r, _) = hostile(&out, b, Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");

    // Sizes that overflow.
    let mut b = Vec::new();
    hello(2, 0, &mut b);
    entry(EntryKind::File, u64::MAX, b"a", &mut b);
    entry(EntryKind::File, 2, b"b", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    let (r, _) = hostile(&out, b, Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");

    // A wrong version.
    let mut b = Vec::new();
    wire::encode(
        &Frame::Hello {
            version: 99,
            entries: 0,
            total_bytes: 0,
        },
        &mut b,
    );
    let (r, replies) = hostile(&out, b, Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");
    assert!(replies[0].contains("version"), "{replies:?}");

    // Garbage instead of a greeting.
    let (r, _) = hostile(&out, b"GET / HTTP/1.1\r\n\r\n".to_vec(), Some(o.clone()));
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn hostile_contents_are_refused() {
    let base = scratch("hostile-data");
    let out = base.join("out");
    let list = |b: &mut Vec<u8>| {
        hello(2, 8, b);
        entry(EntryKind::File, 4, b"a", b);
        entry(EntryKind::File, 4, b"b", b);
        wire::encode(&Frame::ListEnd, b);
    };
    let good_end = Frame::FileEnd {
        hash: *blake3::hash(b"abcd").as_bytes(),
    };

    // More data than the size.
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 0,
        },
        &mut b,
    );
    wire::encode(&Frame::Data(b"abcde"), &mut b);
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");

    // Files out of order, or skipped.
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 1,
            offset: 0,
        },
        &mut b,
    );
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 0,
        },
        &mut b,
    );
    wire::encode(&Frame::Data(b"abcd"), &mut b);
    wire::encode(&good_end, &mut b);
    wire::encode(&Frame::Done, &mut b);
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    fs::remove_file(out.join("a")).unwrap();

    // An offset that was never offered.
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 2,
        },
        &mut b,
    );
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");

    // A wrong hash: an error, and the partial copy is gone.
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 0,
        },
        &mut b,
    );
    wire::encode(&Frame::Data(b"abcX"), &mut b);
    wire::encode(&good_end, &mut b);
    let (r, replies) = hostile(&out, b, None);
    let e = r.unwrap_err();
    assert!(matches!(e, TransferError::Verify(_)), "{e:?}");
    assert_eq!(e.exit_code(), exit::VERIFY);
    assert!(
        replies.iter().any(|r| r.contains("class: 4")),
        "{replies:?}"
    );
    assert!(!out.join("a").exists() && !out.join(".a.udt-partial").exists());

    // A sender that vanishes mid-file leaves a partial for --resume.
    let mut b = Vec::new();
    list(&mut b);
    wire::encode(
        &Frame::FileStart {
            index: 0,
            offset: 0,
        },
        &mut b,
    );
    wire::encode(&Frame::Data(b"ab"), &mut b);
    let (r, _) = hostile(&out, b, None);
    assert!(matches!(r, Err(TransferError::Network(_))), "{r:?}");
    assert_eq!(fs::read(out.join(".a.udt-partial")).unwrap(), b"ab");

    // Set-id bits from the sender are dropped.
    #[cfg(unix)]
    {
        let mut b = Vec::new();
        hello(1, 4, &mut b);
        entry(EntryKind::File, 4, b"c", &mut b);
        wire::encode(&Frame::ListEnd, &mut b);
        wire::encode(
            &Frame::FileStart {
                index: 0,
                offset: 0,
            },
            &mut b,
        );
        wire::encode(&Frame::Data(b"abcd"), &mut b);
        wire::encode(&good_end, &mut b);
        wire::encode(&Frame::Done, &mut b);
        let (r, _) = hostile(&out, b, None);
        r.unwrap();
        // ... and the umask applies (issue 10: modes masked).
        assert_eq!(
            mode(&out.join("c")),
            0o777 & super::outdir::umask_allowed_bits()
        );
    }
    let _ = fs::remove_dir_all(&base);
}

/// A file that changes between scan and send is an error on the sender,
/// never a silent success on the receiver.
#[test]
fn a_file_that_shrinks_while_sent_fails_the_transfer() {
    let base = scratch("shrink");
    let src = base.join("f");
    fs::write(&src, contents(100_000, 3)).unwrap();
    let entries = scan(std::slice::from_ref(&src), &Limits::default(), &mut Quiet).unwrap();
    fs::write(&src, b"short").unwrap();
    let out = base.join("out");
    let (to_recv_w, to_recv_r) = pipe();
    let (to_send_w, to_send_r) = pipe();
    let o = opts(&out);
    let receiver = thread::spawn(move || {
        let mut w = to_send_w;
        receive(to_recv_r, &mut w, &o, &mut Quiet)
    });
    let mut w = to_recv_w;
    let s = send_files(to_send_r, &mut w, &entries, &mut Quiet);
    drop(w);
    assert!(matches!(s, Err(TransferError::Local { .. })), "{s:?}");
    assert!(matches!(
        receiver.join().unwrap(),
        Err(TransferError::Peer { .. })
    ));
    assert!(!out.join("f").exists());
    let _ = fs::remove_dir_all(&base);
}

// ---------------------------------------------------------------------------
// Issue 10: nothing that existed is changed, nothing leaks to the sender.

/// An existing directory is a conflict without --resume/--overwrite, and
/// is merged into with --resume without taking the sender's mode or time.
#[cfg(unix)]
#[test]
fn an_existing_directory_keeps_its_mode_and_time() {
    let base = scratch("existing-dir");
    let src = base.join("src/d");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    set_mode(&src, 0o777);
    let dir_mtime = |p: &Path, t| fs::File::open(p).unwrap().set_modified(t).unwrap();
    dir_mtime(&src, UNIX_EPOCH + Duration::from_secs(1_000_000));
    let out = base.join("out");
    fs::create_dir_all(out.join("d")).unwrap();
    set_mode(&out.join("d"), 0o750);
    let old = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    dir_mtime(&out.join("d"), old);

    let (s, r) = transfer(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    assert_eq!(s.unwrap_err().exit_code(), exit::EXISTS);
    assert_eq!(mode(&out.join("d")), 0o750);
    assert_eq!(mtime(&out.join("d")), old);
    assert!(!out.join("d/f").exists());

    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    s.unwrap();
    r.unwrap();
    assert_eq!(fs::read(out.join("d/f")).unwrap(), b"data");
    assert_eq!(mode(&out.join("d")), 0o750, "mode kept");
    assert_ne!(
        mtime(&out.join("d")),
        UNIX_EPOCH + Duration::from_secs(1_000_000),
        "not the sender's time"
    );
    let _ = fs::remove_dir_all(&base);
}

/// `.ssh` or `.bashrc` at the top level is refused unless allowed.
#[test]
fn top_level_hidden_names_need_allow_hidden() {
    let base = scratch("hidden");
    let src = base.join(".ssh");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("authorized_keys"), b"ssh-ed25519 AAAA evil").unwrap();
    let out = base.join("out");
    let (s, r) = transfer(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");
    assert_eq!(s.unwrap_err().exit_code(), exit::PROTOCOL);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    let mut o = opts(&out);
    o.allow_hidden = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    s.unwrap();
    r.unwrap();
    assert!(out.join(".ssh/authorized_keys").exists());
    let _ = fs::remove_dir_all(&base);
}

/// Every conflict is counted in one refusal, not just the first.
#[test]
fn all_conflicts_are_reported() {
    let base = scratch("conflicts");
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let mut roots = Vec::new();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    for n in names {
        let p = base.join(n);
        fs::write(&p, b"new").unwrap();
        fs::write(out.join(n), b"old").unwrap();
        roots.push(p);
    }
    let (_, r) = transfer(&roots, opts(&out));
    let m = r.unwrap_err().to_string();
    assert!(m.starts_with("7 conflicts"), "{m}");
    assert!(m.contains("and 2 more"), "{m}");
    let _ = fs::remove_dir_all(&base);
}

/// Error frames name files relative to the transfer, never the local
/// absolute path of --out.
#[test]
fn error_frames_do_not_reveal_local_paths() {
    let base = scratch("no-abs-path");
    let out = base.join("secret-place/out");
    fs::create_dir_all(out.join(".f.udt-partial/x")).unwrap();
    let mut o = opts(&out);
    o.resume = true;
    let (r, replies) = hostile(&out, single_file(b"f"), Some(o));
    assert!(matches!(r, Err(TransferError::Local { .. })), "{r:?}");
    assert!(!replies.is_empty());
    for reply in &replies {
        assert!(!reply.contains("secret-place"), "{reply}");
    }
    // The receiver's own message has no absolute path either.
    assert!(!r.unwrap_err().to_string().contains("secret-place"));
    let _ = fs::remove_dir_all(&base);
}

/// A complete file's Have carries no hash: a sender cannot learn the hash
/// of a file it names but does not have.
#[test]
fn resume_does_not_reveal_the_hash_of_an_existing_file() {
    let base = scratch("no-hash-leak");
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("secret"), b"the secret").unwrap();
    let mut b = Vec::new();
    hello(1, 10, &mut b);
    entry(EntryKind::File, 10, b"secret", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    let mut o = opts(&out);
    o.resume = true;
    let (_, replies) = hostile(&out, b, Some(o));
    let have = replies
        .iter()
        .find(|r| r.starts_with("Have"))
        .expect("a have");
    assert!(have.contains(&format!("{:?}", [0u8; 32])), "{have}");
    assert!(!have.contains(&format!("{:?}", blake3::hash(b"the secret").as_bytes())));
    let _ = fs::remove_dir_all(&base);
}

/// Directories are made when a file needs them; a transfer that fails
/// before any data leaves nothing behind.
#[test]
fn a_failed_transfer_leaves_no_empty_directories() {
    let base = scratch("no-empty-dirs");
    let out = base.join("out");
    let mut b = Vec::new();
    hello(4, 4, &mut b);
    entry(EntryKind::Dir, 0, b"d", &mut b);
    entry(EntryKind::Dir, 0, b"d/e", &mut b);
    entry(EntryKind::File, 4, b"d/e/f", &mut b);
    entry(EntryKind::Dir, 0, b"d/empty", &mut b);
    wire::encode(&Frame::ListEnd, &mut b);
    wire::encode(
        &Frame::Error {
            class: 1,
            message: "\x1b[2Jgone",
        },
        &mut b,
    );
    let (r, _) = hostile(&out, b, None);
    let e = r.unwrap_err();
    assert!(matches!(e, TransferError::Peer { .. }), "{e:?}");
    // The peer's text is shown with the escape sequence defused.
    assert!(!e.to_string().contains('\x1b'), "{e}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn the_sender_may_ask_to_resume() {
    let base = scratch("sender-resume");
    let data = contents(2_000_000, 8);
    let src = base.join("big.bin");
    fs::write(&src, &data).unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join(".big.bin.udt-partial"), &data[..777_777]).unwrap();
    // The receiver has no --resume; the sender asks.
    let (s, r) = transfer_asking_resume(std::slice::from_ref(&src), opts(&out));
    let (s, r) = (s.unwrap(), r.unwrap());
    assert_eq!(s.bytes_resumed, 777_777);
    assert_eq!(r.bytes_resumed, 777_777);
    assert_eq!(s.bytes_sent, 2_000_000 - 777_777);
    assert!(fs::read(out.join("big.bin")).unwrap() == data);
    // Asked again, the complete file (with no partial file beside it to
    // show a cut-off run) is a conflict: the sender's word alone may not
    // have it compared, which would confirm guesses of its contents.
    let (s, r) = transfer_asking_resume(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    assert!(s.is_err());
    // Without asking, the same, as before.
    let (_, r) = transfer(std::slice::from_ref(&src), opts(&out));
    assert!(matches!(r, Err(TransferError::Exists(_))), "{r:?}");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn a_sender_resume_adds_to_a_directory_only_where_a_run_was_cut_off() {
    let base = scratch("sender-resume-dirs");
    let src = base.join("photos");
    fs::create_dir_all(src.join("2024")).unwrap();
    let a = contents(300_000, 9);
    let b = contents(500_000, 10);
    fs::write(src.join("2024/a.jpg"), &a).unwrap();
    fs::write(src.join("b.jpg"), &b).unwrap();
    let out = base.join("out");
    // What a cut-off run leaves: a.jpg done, b.jpg partial.
    fs::create_dir_all(out.join("photos/2024")).unwrap();
    fs::write(out.join("photos/2024/a.jpg"), &a).unwrap();
    fs::write(out.join("photos/.b.jpg.udt-partial"), &b[..100_000]).unwrap();
    let (s, r) = transfer_asking_resume(std::slice::from_ref(&src), opts(&out));
    let (s, r) = (s.unwrap(), r.unwrap());
    assert_eq!(s.bytes_resumed, 300_000 + 100_000);
    assert_eq!(r.files_unchanged, 1);
    assert!(fs::read(out.join("photos/b.jpg")).unwrap() == b);

    // A directory that merely exists (no partial file of the list in
    // it) is not added to on the sender's word: every such directory is
    // named, nothing is written.
    let out2 = base.join("out2");
    fs::create_dir_all(out2.join("photos/2024")).unwrap();
    let (s, r) = transfer_asking_resume(std::slice::from_ref(&src), opts(&out2));
    let Err(TransferError::Exists(m)) = r else {
        panic!("{r:?}")
    };
    assert!(m.contains("2 conflicts"), "{m}");
    assert!(
        m.contains("photos/2024") && m.contains("holds no partial file"),
        "{m}"
    );
    assert!(s.is_err());
    assert_eq!(
        listing(&out2),
        vec![out2.join("photos"), out2.join("photos/2024")]
    );
    // The receiver's own --resume still merges.
    let mut o = opts(&out2);
    o.resume = true;
    let (s, r) = transfer(std::slice::from_ref(&src), o);
    assert!(s.is_ok() && r.is_ok(), "{s:?} {r:?}");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn every_differing_complete_file_is_reported_not_just_the_first() {
    let base = scratch("differing");
    let mut roots = Vec::new();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    for n in ["a", "b", "c"] {
        let p = base.join(n);
        fs::write(&p, b"new").unwrap();
        roots.push(p);
    }
    // Same sizes, other contents: only the sender's hash can tell.
    fs::write(out.join("a"), b"old").unwrap();
    fs::write(out.join("c"), b"OLD").unwrap();
    let mut o = opts(&out);
    o.resume = true;
    let (s, r) = transfer(&roots, o);
    let m = r.unwrap_err().to_string();
    assert!(m.starts_with("2 files exist and differ"), "{m}");
    assert!(m.contains("a, c"), "{m}");
    assert_eq!(s.unwrap_err().exit_code(), exit::EXISTS);
    // Nothing was replaced; the file that was missing arrived.
    assert_eq!(fs::read(out.join("a")).unwrap(), b"old");
    assert_eq!(fs::read(out.join("c")).unwrap(), b"OLD");
    assert_eq!(fs::read(out.join("b")).unwrap(), b"new");
    let _ = fs::remove_dir_all(&base);
}
