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
//!
//! This file owns [`Profiler`] (the flags, the writes, the file handling);
//! `cpu.rs` the CPU sampler, `heap.rs` the sampling allocator and its dump.

// `Profiler::write` takes a lock so that the signal thread (SIGUSR2) and the exit path
// never write a profile at once; it is never on the message path.
#![allow(clippy::disallowed_types)]

mod cpu;
mod heap;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cpu::CpuProfile;
use heap::{heap_start, heap_write};

pub use cpu::CPU_HZ;
pub use heap::{SamplingAlloc, HEAP_SAMPLE_BYTES};

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
            heap::stop();
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

#[cfg(test)]
mod tests;
