//! The heap profiler of `--memprofile`: [`SamplingAlloc`], the process's global
//! allocator (glibc malloc plus, while on, one sampled allocation per
//! [`HEAP_SAMPLE_BYTES`] on average), a per-thread sampler, the table of live
//! samples, and the dump by call site (folded stacks or a flame graph).
//!
//! The table of live samples is behind a lock: the allocator is called from every
//! thread. It is taken only for a sampled allocation (one per 512 KiB on average) and
//! its free, only while `--memprofile` is on; off, the allocator costs one relaxed load.
#![allow(clippy::disallowed_types)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{check_writable, is_svg, other, write_atomically};

/// Mean bytes allocated by one thread between two heap samples. Smaller sees
/// more call sites and costs more stack walks; 512 KiB is Go's and tcmalloc's.
pub const HEAP_SAMPLE_BYTES: usize = 512 * 1024;

/// Deepest call stack kept for a heap sample, in frames.
const MAX_FRAMES: usize = 64;

/// The process's global allocator: glibc malloc, sampled while `--memprofile` is on.
///
/// `main.rs` installs it: `#[global_allocator] static ALLOC: SamplingAlloc = SamplingAlloc;`
pub struct SamplingAlloc;

/// Mean bytes between samples; 0 = heap profiling off (the fast path).
pub(super) static RATE: AtomicUsize = AtomicUsize::new(0);
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
pub(super) struct Sampler {
    /// Bytes this thread may still allocate before the next sample.
    pub(super) left: usize,
    /// xorshift64* state; 0 = not seeded yet.
    pub(super) rng: u64,
}

impl Sampler {
    pub(super) const NEW: Sampler = Sampler { left: 0, rng: 0 };

    /// Counts an allocation of `size` bytes; true if it is to be sampled.
    pub(super) fn step(&mut self, size: usize, rate: usize) -> bool {
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

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Bytes until the next sample: exponential with mean `rate`, from 64 random bits.
pub(super) fn interval(rate: usize, random: u64) -> usize {
    // Uniform in (0, 1]: never ln(0).
    let u = ((random >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let bytes = -u.ln() * rate as f64;
    (bytes as usize).max(1)
}

/// The bytes one sample of `size` stands for: `size / P(sampled)`, an unbiased
/// estimate of the bytes allocated at its call site.
pub(super) fn weight(size: usize, rate: usize) -> u64 {
    let p = -(-(size as f64) / rate as f64).exp_m1();
    if p > 0.0 {
        (size as f64 / p).round() as u64
    } else {
        rate as u64
    }
}

/// A sampled block that is still live.
pub(super) struct Sample {
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

pub(super) fn table() -> MutexGuard<'static, BTreeMap<usize, Sample>> {
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
pub(super) fn heap_start(path: &Path, rate: usize) -> io::Result<()> {
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
pub(super) fn heap_write(path: &Path) -> io::Result<(u64, u64)> {
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
pub(super) fn folded_stack(frames: &[String]) -> String {
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

/// Turns sampling off (frees keep being looked up while sampled blocks are live).
pub(super) fn stop() {
    RATE.store(0, Relaxed);
}

#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: SamplingAlloc = SamplingAlloc;
