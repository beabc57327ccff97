//! Profiling a running gateway: `--cpuprofile FILE` and `--memprofile FILE`.
//!
//! Owns the CPU profiler (pprof-rs: `setitimer(ITIMER_PROF)` sends `SIGPROF`
//! to whichever thread is spending CPU, so every executor thread is sampled, once
//! per 1/[`CPU_HZ`] s of CPU time) and the heap profiler built into the process's
//! global allocator, [`SamplingAlloc`]: glibc malloc (`std::alloc::System`)
//! unchanged, plus, only while `--memprofile` is on, one sampled allocation per
//! [`HEAP_SAMPLE_BYTES`] allocated on average, with its call stack, kept until it
//! is freed. With the flag off, the allocator adds one relaxed load of a
//! never-written atomic to each call, and the per-connection memory is glibc's to
//! the byte.
//!
//! [`Profiler::write`] writes both files (on `SIGUSR2` and at exit) and keeps
//! profiling: the CPU profile holds every sample since start, the heap profile the
//! sampled allocations live now. A file is written beside itself and renamed, so a
//! reader never sees half of one.
//!
//! # Reading the CPU profile (`--cpuprofile FILE`)
//!
//! - `FILE` ends in `.svg`: a flame graph; open it in a browser (click to zoom,
//!   Ctrl-F to search). The bottom frame of each tower is the thread's name.
//! - otherwise: pprof protobuf, already symbolized, so no binary is needed:
//!   `go tool pprof -top FILE`, `go tool pprof -http=:8080 FILE` (its
//!   View → Flame Graph), or the standalone `pprof` with the same flags. Each
//!   sample carries a `thread` label: `-tagfocus=thread=NAME` keeps one thread.
//!
//! # Reading the heap profile (`--memprofile FILE`)
//!
//! - `FILE` ends in `.svg`: a flame graph of the live heap by call site, drawn
//!   by the gateway itself; open it in a browser.
//! - otherwise: folded stacks, one line per call site, `root;…;leaf BYTES`, where
//!   BYTES estimates the live bytes allocated there (a sample stands for
//!   size / P(sampled); the error is about ±[`HEAP_SAMPLE_BYTES`]·√samples).
//!   `inferno-flamegraph --countname bytes < FILE > heap.svg` (from
//!   `cargo install inferno`) or `flamegraph.pl --countname=bytes FILE > heap.svg`
//!   draws it; speedscope opens it as is; the biggest sites are
//!   `awk '{print $NF, $0}' FILE | sort -rn | head`. Two dumps taken with
//!   `SIGUSR2` under load compare with
//!   `inferno-diff-folded before after | inferno-flamegraph > growth.svg`.
//!
//! The profiler's own memory (the sample table, the symbol cache of the first
//! write) is not in the heap profile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pprof::protos::Message;

/// CPU samples per second of CPU time (each stands for about 10 ms of one core):
/// prime, so not in step with timers; the `SIGPROF` handler then costs well
/// under 1% of a core.
pub const CPU_HZ: i32 = 99;

/// Mean bytes allocated by one thread between two heap samples. Smaller sees
/// more call sites and costs more stack walks; 512 KiB is Go's and tcmalloc's.
pub const HEAP_SAMPLE_BYTES: usize = 512 * 1024;

/// Deepest call stack kept for a heap sample, in frames.
const MAX_FRAMES: usize = 64;

/// The running profilers; `Send + Sync`, so one `Arc` serves the signal thread
/// and the exit path. Dropping it stops both.
pub struct Profiler {
    cpu: Option<CpuProfile>,
    heap: Option<PathBuf>,
    /// Serializes writes: each file has one temporary name.
    writing: Mutex<()>,
}

impl Profiler {
    /// Starts the profilers the config asks for (either may be None). Errors name the flag.
    pub fn start(cpu: Option<&Path>, mem: Option<&Path>) -> Result<Profiler, String> {
        let cpu = match cpu {
            Some(path) => {
                Some(CpuProfile::start(path).map_err(|e| flag_error("cpuprofile", path, e))?)
            }
            None => None,
        };
        if let Some(path) = mem {
            heap_start(path, HEAP_SAMPLE_BYTES).map_err(|e| flag_error("memprofile", path, e))?;
        }
        Ok(Profiler {
            cpu,
            heap: mem.map(Path::to_path_buf),
            writing: Mutex::new(()),
        })
    }

    /// Writes the profiles now (on SIGUSR2 or at exit); keeps profiling.
    pub fn write(&self) -> Result<(), String> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut errors = Vec::new();
        if let Some(cpu) = &self.cpu {
            match cpu.write() {
                Ok(samples) => {
                    log::info!("cpu profile: {samples} samples -> {}", cpu.path.display())
                }
                Err(e) => errors.push(flag_error("cpuprofile", &cpu.path, e)),
            }
        }
        if let Some(path) = &self.heap {
            match heap_write(path) {
                Ok((samples, bytes)) => log::info!(
                    "heap profile: {samples} samples, about {} KiB live -> {}",
                    bytes / 1024,
                    path.display()
                ),
                Err(e) => errors.push(flag_error("memprofile", path, e)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.heap.is_some() {
            // Frees keep being looked up while sampled blocks are live.
            RATE.store(0, Relaxed);
        }
    }
}

fn flag_error(flag: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("--{flag} {}: {e}", path.display())
}

/// Creates (truncates) `path` now, so a bad path fails at start, not at exit.
fn check_writable(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(drop)
}

fn is_svg(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

/// Writes `path` through `path.tmp` and a rename.
fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|file| {
        let mut out = BufWriter::new(file);
        body(&mut out)?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    });
    match written {
        Ok(()) => std::fs::rename(&tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// pprof-rs's one process-wide sampler and where its reports go.
struct CpuProfile {
    path: PathBuf,
    guard: pprof::ProfilerGuard<'static>,
}

impl CpuProfile {
    fn start(path: &Path) -> io::Result<CpuProfile> {
        check_writable(path)?;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(CPU_HZ)
            // A sample that lands inside these would unwind through code that
            // may hold the unwinder's or malloc's locks: skip it.
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(other)?;
        Ok(CpuProfile {
            path: path.to_path_buf(),
            guard,
        })
    }

    /// Writes every sample since start; returns how many.
    fn write(&self) -> io::Result<isize> {
        let report = self.guard.report().build().map_err(other)?;
        let samples = report.data.values().sum();
        if samples == 0 && is_svg(&self.path) {
            return Err(other("no samples yet: nothing to draw"));
        }
        write_atomically(&self.path, |out| {
            if is_svg(&self.path) {
                report.flamegraph(out).map_err(other)
            } else {
                out.write_all(&report.pprof().map_err(other)?.encode_to_vec())
            }
        })?;
        Ok(samples)
    }
}

// ---------------------------------------------------------------------------
// The heap profiler: a global allocator, a per-thread sampler, a table of live
// samples, and the dump.

/// The process's global allocator: glibc malloc, sampled while `--memprofile` is on.
///
/// `main.rs` installs it: `#[global_allocator] static ALLOC: SamplingAlloc = SamplingAlloc;`
pub struct SamplingAlloc;

/// Mean bytes between samples; 0 = heap profiling off (the fast path).
static RATE: AtomicUsize = AtomicUsize::new(0);
/// Sampled blocks not yet freed; 0 = frees need no look-up (the fast path).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Set by the first sampled-path call: [`SamplingAlloc`] is the global allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);

// SAFETY: every call goes to `System` with the caller's arguments; the
// bookkeeping around it never touches the block and never panics.
unsafe impl GlobalAlloc for SamplingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        let rate = RATE.load(Relaxed);
        if rate != 0 && !p.is_null() {
            on_alloc(p, layout.size(), rate);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        let rate = RATE.load(Relaxed);
        if rate != 0 && !p.is_null() {
            on_alloc(p, layout.size(), rate);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Before the free: once freed, another thread may get and sample `ptr`.
        if LIVE.load(Relaxed) != 0 {
            on_free(ptr);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if RATE.load(Relaxed) == 0 && LIVE.load(Relaxed) == 0 {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let old = take(ptr as usize);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            // `ptr` is still live: put its sample back.
            if let Some(sample) = old {
                let _busy = Busy::enter();
                insert(ptr as usize, sample);
            }
            return p;
        }
        let rate = RATE.load(Relaxed);
        if rate != 0 {
            on_alloc(p, new_size, rate);
        }
        p
    }
}

thread_local! {
    /// Set while this thread runs profiler code, whose own allocations are not sampled.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static SAMPLER: Cell<Sampler> = const { Cell::new(Sampler::NEW) };
}

/// Marks this thread busy until dropped; `None` if it already was (re-entry).
struct Busy;

impl Busy {
    fn enter() -> Option<Busy> {
        // `try_with`: a thread being torn down still allocates.
        match BUSY.try_with(|b| b.replace(true)) {
            Ok(false) => Some(Busy),
            _ => None,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

/// One thread's byte counter: a Poisson process over allocated bytes, so a block
/// of `size` bytes is sampled with probability `1 - e^(-size/rate)`.
#[derive(Clone, Copy)]
struct Sampler {
    /// Bytes this thread may still allocate before the next sample.
    left: usize,
    /// xorshift64* state; 0 = not seeded yet.
    rng: u64,
}

impl Sampler {
    const NEW: Sampler = Sampler { left: 0, rng: 0 };

    /// Counts an allocation of `size` bytes; true if it is to be sampled.
    fn step(&mut self, size: usize, rate: usize) -> bool {
        if self.rng == 0 {
            static SEEDS: AtomicU64 = AtomicU64::new(0);
            let n = SEEDS.fetch_add(1, Relaxed).wrapping_add(1);
            self.rng = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            self.left = interval(rate, self.next());
        }
        if size < self.left {
            self.left -= size;
            return false;
        }
        self.left = interval(rate, self.next());
        true
    }

    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Bytes until the next sample: exponential with mean `rate`, from 64 random bits.
fn interval(rate: usize, random: u64) -> usize {
    // Uniform in (0, 1]: never ln(0).
    let u = ((random >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let bytes = -u.ln() * rate as f64;
    (bytes as usize).max(1)
}

/// The bytes one sample of `size` stands for: `size / P(sampled)`, an unbiased
/// estimate of the bytes allocated at its call site.
fn weight(size: usize, rate: usize) -> u64 {
    let p = -(-(size as f64) / rate as f64).exp_m1();
    if p > 0.0 {
        (size as f64 / p).round() as u64
    } else {
        rate as u64
    }
}

/// A sampled block that is still live.
struct Sample {
    /// Estimated bytes this sample stands for, see [`weight`].
    weight: u64,
    /// Return addresses, innermost first, profiler frames included.
    stack: Box<[usize]>,
}

/// Live samples by address. Locked once per sample, per free of a sampled block,
/// and per false positive of [`FILTER`]; never while profiling is off.
static TABLE: Mutex<BTreeMap<usize, Sample>> = Mutex::new(BTreeMap::new());

const FILTER_BITS: u32 = 17;
/// Counts of live samples by address hash: a free whose slot is 0 skips the lock.
/// 256 KiB of zeroed memory, untouched (not resident) until profiling starts.
static FILTER: [AtomicU16; 1 << FILTER_BITS] = [const { AtomicU16::new(0) }; 1 << FILTER_BITS];

fn slot(addr: usize) -> &'static AtomicU16 {
    let h = ((addr as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS);
    &FILTER[h as usize]
}

fn table() -> MutexGuard<'static, BTreeMap<usize, Sample>> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sampled path of an allocation of `size` bytes at `ptr`.
#[cold]
#[inline(never)]
fn on_alloc(ptr: *mut u8, size: usize, rate: usize) {
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
    let Some(_busy) = Busy::enter() else { return };
    let hit = SAMPLER.with(|s| {
        let mut sampler = s.get();
        let hit = sampler.step(size, rate);
        s.set(sampler);
        hit
    });
    if !hit {
        return;
    }
    let mut ips = [0usize; MAX_FRAMES];
    let mut depth = 0;
    // SAFETY: on Linux the unwinder is thread-safe; the lock that `trace` takes
    // guards Windows' dbghelp, and here it would make sampled allocations wait
    // for a write's symbolization.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if ip == 0 {
                return false; // the outermost frame's return address
            }
            ips[depth] = ip;
            depth += 1;
            depth < MAX_FRAMES
        });
    }
    let sample = Sample {
        weight: weight(size, rate),
        stack: ips[..depth].into(),
    };
    insert(ptr as usize, sample);
}

/// Call while busy: the table's own allocations must not re-enter it.
fn insert(addr: usize, sample: Sample) {
    let old = table().insert(addr, sample);
    if old.is_none() {
        slot(addr).fetch_add(1, Relaxed);
        LIVE.fetch_add(1, Relaxed);
    }
}

#[cold]
#[inline(never)]
fn on_free(ptr: *mut u8) {
    drop(take(ptr as usize));
}

/// Removes the sample of `addr`, if any.
fn take(addr: usize) -> Option<Sample> {
    if LIVE.load(Relaxed) == 0 || slot(addr).load(Relaxed) == 0 {
        return None;
    }
    // Busy: only the profiler's own blocks, never sampled, are freed while busy.
    let _busy = Busy::enter()?;
    let sample = table().remove(&addr)?;
    slot(addr).fetch_sub(1, Relaxed);
    LIVE.fetch_sub(1, Relaxed);
    Some(sample)
}

/// Turns sampling on at mean interval `rate` and checks that the file can be written.
fn heap_start(path: &Path, rate: usize) -> io::Result<()> {
    check_writable(path)?;
    RATE.store(rate, Relaxed);
    drop(std::hint::black_box(Box::new(0u64)));
    if !INSTALLED.load(Relaxed) {
        RATE.store(0, Relaxed);
        return Err(other(
            "the sampling allocator is not installed: main.rs needs \
             #[global_allocator] static ALLOC: SamplingAlloc = SamplingAlloc;",
        ));
    }
    Ok(())
}

/// Writes the live samples by call site; returns (samples, estimated bytes).
fn heap_write(path: &Path) -> io::Result<(u64, u64)> {
    let _busy = Busy::enter();
    let mut by_stack: HashMap<Box<[usize]>, u64> = HashMap::new();
    let mut samples = 0;
    for sample in table().values() {
        *by_stack.entry(sample.stack.clone()).or_default() += sample.weight;
        samples += 1;
    }
    // Stacks that differ only in frames cut off, or in lines of one function,
    // fold to one line.
    let mut names: HashMap<usize, Vec<String>> = HashMap::new();
    let mut sites: BTreeMap<String, u64> = BTreeMap::new();
    for (stack, bytes) in by_stack {
        let frames: Vec<String> = stack
            .iter()
            .flat_map(|&ip| names.entry(ip).or_insert_with(|| symbolize(ip)).clone())
            .collect();
        *sites.entry(folded_stack(&frames)).or_default() += bytes;
    }
    let total = sites.values().sum();
    let lines: Vec<String> = sites
        .iter()
        .map(|(stack, bytes)| format!("{stack} {bytes}"))
        .collect();
    if lines.is_empty() && is_svg(path) {
        return Err(other("no live samples: nothing to draw"));
    }
    write_atomically(path, |out| {
        if is_svg(path) {
            let mut options = pprof::flamegraph::Options::default();
            options.title = "ws2api live heap (sampled)".into();
            options.count_name = "bytes".into();
            pprof::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
                .map_err(other)
        } else {
            lines.iter().try_for_each(|line| writeln!(out, "{line}"))
        }
    })?;
    Ok((samples, total))
}

/// The names at return address `ip`, innermost inlined frame first.
fn symbolize(ip: usize) -> Vec<String> {
    let mut names = Vec::new();
    backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
        if let Some(name) = symbol.name() {
            names.push(format!("{name:#}"));
        }
    });
    if names.is_empty() {
        names.push(format!("{ip:#x}"));
    }
    names
}

/// True for the frames of the allocator and of this profiler, which every sample has.
fn is_allocator_frame(name: &str) -> bool {
    [
        "SamplingAlloc",
        "__rust_alloc",
        "__rust_realloc",
        "__rg_alloc",
        "__rg_realloc",
    ]
    .iter()
    .any(|marker| name.contains(marker))
}

/// The stack of a folded line from frames innermost first: `root;…;leaf`, with
/// the allocator's frames (and the profiler's, inside them) cut off.
fn folded_stack(frames: &[String]) -> String {
    let caller = frames
        .iter()
        .rposition(|f| is_allocator_frame(f))
        .map_or(0, |i| i + 1);
    let mut stack = String::new();
    for frame in frames[caller..].iter().rev() {
        if !stack.is_empty() {
            stack.push(';');
        }
        // `;` separates frames (it appears in names such as `[u8; 4]`).
        stack.extend(frame.chars().map(|c| if c == ';' { ':' } else { c }));
    }
    if stack.is_empty() {
        stack.push_str("[unknown]");
    }
    stack
}

#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: SamplingAlloc = SamplingAlloc;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Serializes the tests that start profilers: both are process-wide.
    static PROFILING: Mutex<()> = Mutex::new(());

    fn profiling() -> MutexGuard<'static, ()> {
        PROFILING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ws2api-profile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn profiler_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Profiler>();
    }

    #[test]
    fn intervals_are_exponential_with_the_requested_mean() {
        let mut s = Sampler { left: 0, rng: 1 };
        let n = 200_000;
        let draws: Vec<usize> = (0..n).map(|_| interval(1000, s.next())).collect();
        let mean = draws.iter().sum::<usize>() as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 15.0, "mean {mean}");
        assert!(draws.iter().all(|&d| d >= 1));
        // Exponential: P(X > mean) = 1/e.
        let above = draws.iter().filter(|&&d| d > 1000).count() as f64 / n as f64;
        assert!((above - (-1f64).exp()).abs() < 0.01, "above {above}");
        assert_eq!(
            interval(1000, u64::MAX),
            1,
            "u = 1 gives the shortest interval"
        );
    }

    #[test]
    fn weight_is_size_over_sampling_probability() {
        let rate = 512 * 1024;
        assert_eq!(
            weight(1, rate),
            rate as u64 + 1,
            "a tiny block stands for one interval"
        );
        assert_eq!(
            weight(rate * 64, rate),
            rate as u64 * 64,
            "a huge block is always sampled"
        );
        let e = std::f64::consts::E;
        assert_eq!(
            weight(rate, rate),
            (rate as f64 / (1.0 - 1.0 / e)).round() as u64
        );
    }

    #[test]
    fn sampler_estimates_the_bytes_allocated_at_a_site() {
        for size in [16, 1000, 100_000, 2_000_000] {
            let (rate, total) = (64 * 1024, 1usize << 30);
            let mut s = Sampler::NEW;
            let mut estimate = 0u64;
            for _ in 0..total / size {
                if s.step(size, rate) {
                    estimate += weight(size, rate);
                }
            }
            let error = (estimate as f64 - total as f64).abs() / total as f64;
            assert!(error < 0.05, "size {size}: estimate {estimate} of {total}");
        }
    }

    #[test]
    fn folded_stack_is_root_first_without_allocator_frames() {
        let frames: Vec<String> = [
            "backtrace::backtrace::trace_unsynchronized",
            "hprof::profile::on_alloc",
            "<hprof::profile::SamplingAlloc as core::alloc::global::GlobalAlloc>::alloc",
            "__rustc::__rust_alloc",
            "alloc::raw_vec::RawVec<T>::allocate_in",
            "ws2api::ws::Connection::new",
            "<[u8; 4] as Foo>::bar",
            "main",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            folded_stack(&frames),
            "main;<[u8: 4] as Foo>::bar;ws2api::ws::Connection::new;alloc::raw_vec::RawVec<T>::allocate_in"
        );
        assert_eq!(folded_stack(&frames[..3]), "[unknown]");
        let plain = ["a".to_string(), "b".to_string()];
        assert_eq!(folded_stack(&plain), "b;a", "no allocator frame: all kept");
    }

    #[test]
    fn the_disabled_allocator_is_plain_malloc() {
        let _p = profiling();
        assert_eq!(RATE.load(Relaxed), 0);
        let before = table().len();
        for align in [1, 8, 64, 4096] {
            for size in [1, 24, 4096, 1 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is freed with its layout.
                unsafe {
                    let p = SamplingAlloc.alloc_zeroed(layout);
                    assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                    assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    p.write_bytes(0xa5, size);
                    let q = SamplingAlloc.realloc(p, layout, size * 3);
                    assert!(!q.is_null());
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    SamplingAlloc.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let r = SamplingAlloc.alloc(layout);
                    assert!(!r.is_null() && (r as usize).is_multiple_of(align));
                    SamplingAlloc.dealloc(r, layout);
                }
            }
        }
        let kept: Vec<Vec<u8>> = (0..1000).map(|i| vec![1; i * 100]).collect();
        assert_eq!(kept.len(), 1000);
        assert!(table().len() <= before, "nothing is sampled while off");
    }

    #[inline(never)]
    fn allocate_for_heap_test(bytes: usize) -> Vec<Vec<u8>> {
        (0..bytes / 1024).map(|_| vec![7u8; 1024]).collect()
    }

    fn bytes_at(folded: &str, site: &str) -> u64 {
        folded
            .lines()
            .filter(|l| l.contains(site))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn the_heap_profile_has_live_blocks_by_call_site_and_forgets_freed_ones() {
        let _p = profiling();
        let dir = scratch_dir("heap");
        let path = dir.join("heap.folded");
        heap_start(&path, 16 * 1024).unwrap();
        let kept = allocate_for_heap_test(8 << 20);
        heap_write(&path).unwrap();
        let folded = std::fs::read_to_string(&path).unwrap();
        drop(kept);
        heap_write(&path).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        RATE.store(0, Relaxed);

        let mut stacks = std::collections::HashSet::new();
        for line in folded.lines() {
            let (stack, bytes) = line.rsplit_once(' ').unwrap();
            assert!(stacks.insert(stack), "one line per stack: {stack}");
            assert!(
                !stack.is_empty() && bytes.parse::<u64>().unwrap() > 0,
                "{line}"
            );
            assert!(
                !line.contains("SamplingAlloc"),
                "allocator frames are cut: {line}"
            );
        }
        let live = bytes_at(&folded, "allocate_for_heap_test") as f64;
        assert!(
            (live / (8 << 20) as f64 - 1.0).abs() < 0.25,
            "estimated {live} of 8 MiB:\n{folded}"
        );
        assert!(
            bytes_at(&after, "allocate_for_heap_test") < 256 * 1024,
            "freed:\n{after}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn start_names_the_flag_and_a_bad_path() {
        let _p = profiling();
        let bad = Path::new("/no/such/dir/cpu.pb");
        let e = Profiler::start(Some(bad), None).err().unwrap();
        assert!(e.starts_with("--cpuprofile /no/such/dir/cpu.pb: "), "{e}");
        let e = Profiler::start(None, Some(bad)).err().unwrap();
        assert!(e.starts_with("--memprofile /no/such/dir/cpu.pb: "), "{e}");
        assert_eq!(RATE.load(Relaxed), 0);
    }

    /// Burns CPU on named threads until each has a sample, as the executors would.
    fn burn_until_sampled(cpu: &CpuProfile, names: &[&str]) {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = names
            .iter()
            .map(|name| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(move || {
                        let mut x = 1u64;
                        while !stop.load(Relaxed) {
                            for _ in 0..10_000 {
                                x = std::hint::black_box(
                                    x.wrapping_mul(6364136223846793005).wrapping_add(1),
                                );
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let report = cpu.guard.report().build().unwrap();
            let sampled = |name: &&str| report.data.keys().any(|f| f.thread_name == *name);
            if names.iter().all(sampled) {
                break;
            }
            assert!(Instant::now() < deadline, "threads not sampled in 30 s");
        }
        stop.store(true, Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn write_gives_a_pprof_file_and_a_folded_heap_that_grow_with_work() {
        let _p = profiling();
        let dir = scratch_dir("pb");
        let (cpu, heap) = (dir.join("cpu.pb"), dir.join("heap.folded"));
        let profiler = Profiler::start(Some(&cpu), Some(&heap)).unwrap();
        burn_until_sampled(profiler.cpu.as_ref().unwrap(), &["shard-0", "shard-1"]);
        let kept = allocate_for_heap_test(4 << 20);
        profiler.write().unwrap();
        drop(kept);

        let profile = pprof::protos::Profile::decode(&std::fs::read(&cpu).unwrap()[..]).unwrap();
        assert!(!profile.sample.is_empty());
        for name in ["shard-0", "shard-1"] {
            assert!(
                profile.string_table.iter().any(|s| s == name),
                "thread {name} in the pprof"
            );
        }
        assert!(
            bytes_at(
                &std::fs::read_to_string(&heap).unwrap(),
                "allocate_for_heap_test"
            ) > 0
        );
        drop(profiler);
        assert_eq!(
            RATE.load(Relaxed),
            0,
            "dropping the profiler stops heap sampling"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_gives_flame_graphs_for_svg_files() {
        let _p = profiling();
        let dir = scratch_dir("svg");
        let (cpu, heap) = (dir.join("cpu.svg"), dir.join("heap.svg"));
        let profiler = Profiler::start(Some(&cpu), Some(&heap)).unwrap();
        burn_until_sampled(profiler.cpu.as_ref().unwrap(), &["svg-burner"]);
        let kept = allocate_for_heap_test(4 << 20);
        profiler.write().unwrap();
        drop(kept);
        drop(profiler);
        for file in [&cpu, &heap] {
            let svg = std::fs::read_to_string(file).unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("</svg>"),
                "{}",
                file.display()
            );
        }
        assert!(std::fs::read_to_string(&heap)
            .unwrap()
            .contains("allocate_for_heap_test"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
