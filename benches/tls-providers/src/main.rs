//! ring vs aws-lc-rs under rustls 0.23, measured the way ws2api uses it: the server side is
//! `UnbufferedServerConnection` (the sans-IO API), the client is a buffered `ClientConnection`,
//! both in this one thread, records passed through `Vec`s. Only time spent inside server-side
//! calls is counted (`Instant` around them; single thread, quiet machine => wall == CPU).
//!
//! Usage: ws2api-tls-providers <ring|aws-lc-rs> [hs|rec|mem|all]
//! Output: one tab-separated line per number: provider, metric, value, unit, note.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

// ---------- counting allocator: live heap bytes ----------
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static A: Counting = Counting;
fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// aws-lc (C) allocates its key contexts with malloc, which the Rust allocator never sees:
// glibc's mallinfo2() counts every malloc'd byte in use, C or Rust, chunk overhead included.
#[repr(C)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}
extern "C" {
    fn mallinfo2() -> MallInfo2;
}
fn malloc_live() -> isize {
    let m = unsafe { mallinfo2() };
    (m.uordblks + m.hblkhd) as isize
}

// ---------- PKI (made by gen-certs.sh) ----------
const CA: &[u8] = include_bytes!("../certs/ca.pem");
const ECDSA_CERT: &[u8] = include_bytes!("../certs/server-ecdsa.pem");
const ECDSA_KEY: &[u8] = include_bytes!("../certs/server-ecdsa.key");
const RSA_CERT: &[u8] = include_bytes!("../certs/server-rsa.pem");
const RSA_KEY: &[u8] = include_bytes!("../certs/server-rsa.key");
const CLIENT_CERT: &[u8] = include_bytes!("../certs/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("../certs/client.key");

fn chain(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).map(|c| c.unwrap()).collect()
}
fn key(pem: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem).unwrap()
}
fn roots() -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in chain(CA) {
        r.add(c).unwrap();
    }
    Arc::new(r)
}

// ---------- providers ----------
#[derive(Clone, Copy, PartialEq)]
enum Prov {
    #[cfg(feature = "ring")]
    Ring,
    #[cfg(feature = "aws-lc-rs")]
    AwsLc,
}
impl Prov {
    fn parse(s: &str) -> Prov {
        match s {
            #[cfg(feature = "ring")]
            "ring" => Prov::Ring,
            #[cfg(feature = "aws-lc-rs")]
            "aws-lc-rs" | "aws" => Prov::AwsLc,
            _ => panic!("unknown or not compiled-in provider {s:?}"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => "ring",
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => "aws-lc-rs",
        }
    }
    fn default_provider(self) -> CryptoProvider {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => rustls::crypto::ring::default_provider(),
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => rustls::crypto::aws_lc_rs::default_provider(),
        }
    }
    fn x25519(self) -> &'static dyn SupportedKxGroup {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => rustls::crypto::ring::kx_group::X25519,
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => rustls::crypto::aws_lc_rs::kx_group::X25519,
        }
    }
    /// The list rustls' own default features (`prefer-post-quantum`) give aws-lc-rs.
    fn pq_first(self) -> Option<Vec<&'static dyn SupportedKxGroup>> {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => None,
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => {
                use rustls::crypto::aws_lc_rs::kx_group::*;
                Some(vec![X25519MLKEM768, X25519, SECP256R1, SECP384R1])
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kx {
    Default,
    X25519,
    PqFirst,
}
impl Kx {
    fn name(self) -> &'static str {
        match self {
            Kx::Default => "kx=default",
            Kx::X25519 => "kx=x25519",
            Kx::PqFirst => "kx=x25519mlkem768-first",
        }
    }
}

fn provider(p: Prov, kx: Kx, suite: Option<&str>) -> Option<Arc<CryptoProvider>> {
    let mut cp = p.default_provider();
    match kx {
        Kx::Default => {}
        Kx::X25519 => cp.kx_groups = vec![p.x25519()],
        Kx::PqFirst => cp.kx_groups = p.pq_first()?,
    }
    if let Some(s) = suite {
        cp.cipher_suites.retain(|cs| format!("{:?}", cs.suite()) == s);
        assert!(!cp.cipher_suites.is_empty(), "no suite {s}");
    }
    Some(Arc::new(cp))
}

struct Case {
    cert: &'static [u8],
    key: &'static [u8],
    version: &'static SupportedProtocolVersion,
    mtls: bool,
}

fn configs(p: &Arc<CryptoProvider>, c: &Case) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let versions = [c.version];
    let sb = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&versions)
        .unwrap();
    let sb = if c.mtls {
        let v = WebPkiClientVerifier::builder_with_provider(roots(), p.clone())
            .build()
            .unwrap();
        sb.with_client_cert_verifier(v)
    } else {
        sb.with_no_client_auth()
    };
    let mut s = sb.with_single_cert(chain(c.cert), key(c.key)).unwrap();
    s.send_tls13_tickets = 0;
    let cb = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots());
    let mut cl = if c.mtls {
        cb.with_client_auth_cert(chain(CLIENT_CERT), key(CLIENT_KEY))
            .unwrap()
    } else {
        cb.with_no_client_auth()
    };
    cl.resumption = Resumption::disabled();
    (Arc::new(s), Arc::new(cl))
}

// ---------- unbuffered server driver ----------
#[derive(Default)]
struct Io {
    incoming: Vec<u8>,  // bytes from the client not yet consumed by the server
    outgoing: Vec<u8>,  // server->client bytes; [..out_used] are valid
    out_used: usize,
}

#[derive(PartialEq, Debug)]
enum Pump {
    Blocked,
    Ready,
    Closed,
}

/// Runs the server's `process_tls_records` loop until it needs more input (or can write).
/// `on_app` sees each decrypted application record.
fn pump(conn: &mut UnbufferedServerConnection, io: &mut Io, mut on_app: impl FnMut(&[u8])) -> Pump {
    // Consumed bytes are skipped by offset and compacted once on return (a per-call memmove
    // of the whole buffer would dominate the per-record numbers).
    let mut off = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut io.incoming[off..]);
        let res = match state.expect("server error") {
            ConnectionState::ReadTraffic(mut st) => {
                while let Some(r) = st.next_record() {
                    let r = r.expect("decrypt");
                    discard += r.discard;
                    on_app(r.payload);
                }
                None
            }
            ConnectionState::EncodeTlsData(mut st) => {
                loop {
                    match st.encode(&mut io.outgoing[io.out_used..]) {
                        Ok(n) => {
                            io.out_used += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(e)) => {
                            io.outgoing.resize(io.out_used + e.required_size, 0)
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                None
            }
            // The caller ships io.outgoing after pump() returns, before feeding more input.
            ConnectionState::TransmitTlsData(st) => {
                st.done();
                None
            }
            ConnectionState::BlockedHandshake => Some(Pump::Blocked),
            ConnectionState::WriteTraffic(_) => Some(Pump::Ready),
            ConnectionState::PeerClosed | ConnectionState::Closed => Some(Pump::Closed),
            other => panic!("unexpected {other:?}"),
        };
        off += discard;
        if let Some(r) = res {
            io.incoming.drain(..off);
            return r;
        }
    }
}

fn client_to_vec(c: &mut ClientConnection, v: &mut Vec<u8>) {
    while c.wants_write() {
        c.write_tls(v).unwrap();
    }
}
/// Feeds server bytes to the client; returns how many plaintext bytes the client read.
fn vec_to_client(bytes: &[u8], c: &mut ClientConnection) -> usize {
    let mut rd = bytes;
    let mut plain = 0;
    let mut sink = [0u8; 4096];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().expect("client error");
        loop {
            match std::io::Read::read(&mut c.reader(), &mut sink) {
                Ok(0) => break,
                Ok(n) => plain += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    plain
}
fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// One full handshake against an unbuffered server; returns both ends and the server's time.
fn handshake_unbuffered(
    s: &Arc<ServerConfig>,
    c: &Arc<ClientConfig>,
    io: &mut Io,
) -> (UnbufferedServerConnection, ClientConnection, Duration) {
    let mut client = ClientConnection::new(c.clone(), server_name()).unwrap();
    let t0 = Instant::now();
    let mut server = UnbufferedServerConnection::new(s.clone()).unwrap();
    let mut t = t0.elapsed();
    loop {
        client_to_vec(&mut client, &mut io.incoming);
        let t0 = Instant::now();
        let st = pump(&mut server, io, |_| panic!("no app data expected"));
        t += t0.elapsed();
        vec_to_client(&io.outgoing[..io.out_used], &mut client);
        io.out_used = 0;
        assert_ne!(st, Pump::Closed);
        if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
            return (server, client, t);
        }
    }
}

/// Same with the buffered `ServerConnection` (used only for the memory comparison).
fn handshake_buffered(s: &Arc<ServerConfig>, c: &Arc<ClientConfig>) -> (ServerConnection, ClientConnection) {
    let mut client = ClientConnection::new(c.clone(), server_name()).unwrap();
    let mut server = ServerConnection::new(s.clone()).unwrap();
    let mut buf = Vec::new();
    loop {
        client_to_vec(&mut client, &mut buf);
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().expect("server error");
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        vec_to_client(&buf, &mut client);
        buf.clear();
        if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
            return (server, client);
        }
    }
}

fn emit(p: Prov, metric: &str, value: f64, unit: &str, note: &str) {
    println!("{}\t{}\t{:.1}\t{}\t{}", p.name(), metric, value, unit, note);
    std::io::stdout().flush().unwrap();
}

fn cases() -> Vec<(&'static str, Case)> {
    use rustls::version::{TLS12, TLS13};
    vec![
        ("hs tls13 ecdsa-p256", Case { cert: ECDSA_CERT, key: ECDSA_KEY, version: &TLS13, mtls: false }),
        ("hs tls13 rsa-2048", Case { cert: RSA_CERT, key: RSA_KEY, version: &TLS13, mtls: false }),
        ("hs tls12 ecdsa-p256", Case { cert: ECDSA_CERT, key: ECDSA_KEY, version: &TLS12, mtls: false }),
        ("hs tls13 ecdsa-p256 mtls", Case { cert: ECDSA_CERT, key: ECDSA_KEY, version: &TLS13, mtls: true }),
    ]
}

fn bench_handshakes(p: Prov) {
    for (name, case) in cases() {
        for kx in [Kx::Default, Kx::X25519, Kx::PqFirst] {
            if kx == Kx::PqFirst && case.version == &rustls::version::TLS12 {
                continue; // ML-KEM hybrids are TLS 1.3 only
            }
            let Some(cp) = provider(p, kx, None) else { continue };
            let (s, c) = configs(&cp, &case);
            let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
            let mut group = String::new();
            let mut suite = String::new();
            for _ in 0..30 {
                let (srv, _, _) = handshake_unbuffered(&s, &c, &mut io); // warm-up
                group = format!("{:?}", srv.negotiated_key_exchange_group().unwrap().name());
                suite = format!("{:?}", srv.negotiated_cipher_suite().unwrap().suite());
                if case.mtls {
                    assert!(srv.peer_certificates().is_some());
                }
            }
            // Run until 1 s of server time (and at least 100 handshakes).
            let (mut n, mut t) = (0u32, Duration::ZERO);
            while t < Duration::from_secs(1) || n < 100 {
                let (_srv, _cl, dt) = handshake_unbuffered(&s, &c, &mut io);
                t += dt;
                n += 1;
            }
            let per_s = n as f64 / t.as_secs_f64();
            emit(p, &format!("{name} {}", kx.name()), per_s, "hs/s(server)", &format!("{group} {suite} n={n}"));
        }
    }
}

fn bench_records(p: Prov) {
    let suites = [
        "TLS13_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ];
    {
        // Which suite the defaults negotiate.
        let cp = provider(p, Kx::X25519, None).unwrap();
        let (s, c) = configs(&cp, &cases().remove(0).1);
        let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
        let (srv, _, _) = handshake_unbuffered(&s, &c, &mut io);
        let suite = format!("{:?}", srv.negotiated_cipher_suite().unwrap().suite());
        emit(p, "default tls13 suite", 0.0, "-", &suite);
    }
    for suite in suites {
        let cp = provider(p, Kx::X25519, Some(suite)).unwrap();
        let (s, c) = configs(&cp, &cases().remove(0).1);
        for size in [100usize, 1024] {
            let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
            let (mut srv, mut cl, _) = handshake_unbuffered(&s, &c, &mut io);
            let msg = vec![0x5au8; size];
            const BATCH: usize = 1000;
            const BATCHES: usize = 100;
            // decrypt: client makes BATCH records (untimed), server decrypts them (timed)
            let mut t_dec = Duration::ZERO;
            let mut got = 0usize;
            for _ in 0..BATCHES {
                for _ in 0..BATCH {
                    cl.writer().write_all(&msg).unwrap();
                    client_to_vec(&mut cl, &mut io.incoming);
                }
                let t0 = Instant::now();
                let st = pump(&mut srv, &mut io, |pl| got += pl.len());
                t_dec += t0.elapsed();
                assert_eq!(st, Pump::Ready);
                assert!(io.incoming.is_empty());
            }
            assert_eq!(got, size * BATCH * BATCHES);
            // encrypt: server encrypts BATCH records into a buffer (timed), client checks one batch
            let mut out = vec![0u8; BATCH * (size + 64)];
            let mut t_enc = Duration::ZERO;
            for b in 0..BATCHES {
                let mut empty: [u8; 0] = [];
                let UnbufferedStatus { discard, state } = srv.process_tls_records(&mut empty);
                assert_eq!(discard, 0);
                let ConnectionState::WriteTraffic(mut wt) = state.unwrap() else { panic!() };
                let mut used = 0;
                let t0 = Instant::now();
                for _ in 0..BATCH {
                    match wt.encrypt(&msg, &mut out[used..]) {
                        Ok(n) => used += n,
                        Err(EncryptError::InsufficientSize(_)) => panic!("out too small"),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                t_enc += t0.elapsed();
                if b == 0 {
                    assert_eq!(vec_to_client(&out[..used], &mut cl), size * BATCH);
                }
            }
            let n = (BATCH * BATCHES) as f64;
            let enc = t_enc.as_nanos() as f64 / n;
            let dec = t_dec.as_nanos() as f64 / n;
            emit(p, &format!("rec {suite} {size}B encrypt"), enc, "ns/rec", "");
            emit(p, &format!("rec {suite} {size}B decrypt"), dec, "ns/rec", "");
            emit(p, &format!("rec {suite} {size}B enc+dec"), enc + dec, "ns/rec", "");
        }
    }
}

fn report_mem(p: Prov, name: &str, samples: Vec<(isize, isize)>) {
    let mut r: Vec<isize> = samples.iter().map(|s| s.0).collect();
    let mut m: Vec<isize> = samples.iter().map(|s| s.1).collect();
    r.sort();
    m.sort();
    let mid = r.len() / 2;
    emit(p, &format!("mem {name} rust-alloc"), r[mid] as f64, "B heap", "bytes via Rust allocator freed by drop(conn)");
    emit(p, &format!("mem {name} malloc"), m[mid] as f64, "B heap", "glibc mallinfo2 in-use freed by drop(conn), C allocs + chunk overhead");
}

fn bench_memory(p: Prov) {
    emit(p, "size_of UnbufferedServerConnection", std::mem::size_of::<UnbufferedServerConnection>() as f64, "B", "stack/inline");
    emit(p, "size_of ServerConnection", std::mem::size_of::<ServerConnection>() as f64, "B", "stack/inline");
    let (name_plain, plain) = cases().remove(0);
    let (name_mtls, mtls) = cases().remove(3);
    for (name, case) in [(name_plain, plain), (name_mtls, mtls)] {
        let name = name.trim_start_matches("hs ");
        for kx in [Kx::Default, Kx::X25519, Kx::PqFirst] {
            let Some(cp) = provider(p, kx, None) else { continue };
            let (s, c) = configs(&cp, &case);
            // warm up so lazily-initialised globals are not counted
            let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
            drop(handshake_unbuffered(&s, &c, &mut io));
            drop(handshake_buffered(&s, &c));

            // unbuffered: heap owned by the connection = live bytes freed by dropping it,
            // with the client still alive and all records drained
            let mut samples = Vec::new();
            for _ in 0..5 {
                let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
                let before_create = live();
                let (srv, cl, _) = handshake_unbuffered(&s, &c, &mut io);
                assert!(io.incoming.is_empty() && io.out_used == 0);
                drop(io); // the caller's buffers are the gateway's, not rustls'
                let (with, mwith) = (live(), malloc_live());
                drop(srv);
                let held = (with - live(), mwith - malloc_live());
                drop(cl);
                let _ = before_create;
                samples.push(held);
            }
            report_mem(p, &format!("unbuffered idle {name} {}", kx.name()), samples);

            let mut samples = Vec::new();
            for _ in 0..5 {
                let (srv, cl) = handshake_buffered(&s, &c);
                let (with, mwith) = (live(), malloc_live());
                drop(srv);
                let held = (with - live(), mwith - malloc_live());
                drop(cl);
                samples.push(held);
            }
            report_mem(p, &format!("buffered idle {name} {}", kx.name()), samples);
        }
    }
}

fn bench_memory_suites(p: Prov) {
    for suite in ["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384", "TLS13_CHACHA20_POLY1305_SHA256"] {
        let cp = provider(p, Kx::X25519, Some(suite)).unwrap();
        let (s, c) = configs(&cp, &cases().remove(0).1);
        let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
        drop(handshake_unbuffered(&s, &c, &mut io));
        let mut samples = Vec::new();
        for _ in 0..5 {
            let mut io = Io { outgoing: vec![0; 16 * 1024], ..Default::default() };
            let (srv, cl, _) = handshake_unbuffered(&s, &c, &mut io);
            drop(io);
            let (with, mwith) = (live(), malloc_live());
            drop(srv);
            samples.push((with - live(), mwith - malloc_live()));
            drop(cl);
        }
        report_mem(p, &format!("unbuffered idle tls13 ecdsa-p256 {suite}"), samples);
    }
}

fn main() {
    if std::env::var("GLIBC_TUNABLES").map_or(true, |v| !v.contains("tcache_count=0")) {
        eprintln!("note: run with GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0 \
                   (run.sh does) or the malloc-level memory numbers under-count frees");
    }
    let args: Vec<String> = std::env::args().collect();
    let p = Prov::parse(args.get(1).map(String::as_str).unwrap_or("ring"));
    let what = args.get(2).map(String::as_str).unwrap_or("all");
    if matches!(what, "mem" | "all") {
        bench_memory(p);
        bench_memory_suites(p);
    }
    if matches!(what, "rec" | "all") {
        bench_records(p);
    }
    if matches!(what, "hs" | "all") {
        bench_handshakes(p);
    }
}
